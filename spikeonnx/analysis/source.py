"""The model's bytes, read once: a light proto for the analysis, the weights for onnxruntime.

The analysis needs the graph and the *shapes* of the weights, never their values
(except small constants such as reshape targets). :func:`read_model` therefore
walks the serialized model (a memory-mapped file, the caller's bytes, or one
serialization of a proto) at the protobuf wire level and parses it without the
data of the big initializers, remembering where each one's bytes are
(:class:`ModelSource`). onnxruntime then gets those bytes where they already are:

- model from a file: the light proto, with each big initializer declared as
  external data at its offset in the original file (onnxruntime reads it from
  there);
- model from bytes or a proto: the light proto, with each big initializer given
  as an OrtValue viewing the buffer (``add_external_initializers``, no copy).

So a session exposing extra outputs (the rate probes) costs the weights once, as a
plain session of the same model does.
"""

from __future__ import annotations

import mmap
import os
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import onnx

from .. import contract

__all__ = ["ModelSource", "ExternalDataError", "read_model", "make_session"]

# data fields of TensorProto whose bytes are the raw little-endian values when
# packed: float_data (FLOAT, FLOAT16 is not stored there), raw_data, double_data
_RAW, _FLOATS, _DOUBLES = 9, 4, 10
_NAME, _DIMS, _DATA_TYPE, _LOCATION = 8, 1, 2, 14
# float data above this many bytes is left in the buffer; other types only when huge,
# so that shape constants always stay in the proto
_FLOAT_LIMIT = 4096
_OTHER_LIMIT = 1 << 20
_FLOAT_TYPES = {onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE, onnx.TensorProto.FLOAT16}
_STRIPPABLE = _FLOAT_TYPES | {
    onnx.TensorProto.INT8, onnx.TensorProto.UINT8, onnx.TensorProto.INT16, onnx.TensorProto.UINT16,
    onnx.TensorProto.INT32, onnx.TensorProto.INT64,
}

Buffer = Union[bytes, mmap.mmap]


class ExternalDataError(ValueError):
    """A model file's external data is not where onnx allows it (inside its folder)."""


class _WireError(ValueError):
    """The buffer is not a well-formed protobuf message."""


def _varint(buf: Buffer, pos: int, end: int) -> Tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= end or shift > 63:
            raise _WireError("truncated varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _fields(buf: Buffer, pos: int, end: int) -> Iterator[Tuple[int, int, int, int, int]]:
    """``(field number, wire type, start of the field, start of its payload, end)``."""
    while pos < end:
        start = pos
        key, pos = _varint(buf, pos, end)
        number, wire = key >> 3, key & 7
        if wire == 0:
            _, stop = _varint(buf, pos, end)
        elif wire == 1:
            stop = pos + 8
        elif wire == 2:
            length, pos = _varint(buf, pos, end)
            stop = pos + length
        elif wire == 5:
            stop = pos + 4
        else:
            raise _WireError(f"unsupported wire type {wire}")
        if stop > end or number == 0:
            raise _WireError("field runs past the end of its message")
        yield number, wire, start, pos, stop
        pos = stop


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _length_delimited(number: int, payload: bytes) -> bytes:
    return _encode_varint(number << 3 | 2) + _encode_varint(len(payload)) + payload


class ModelSource:
    """Where the model's bytes are, and the spans of the initializers left out of
    the analysed proto.

    Attributes
    ----------
    path : str or None
        The model file (its folder resolves external data), None for bytes/protos.
    spans : dict
        Initializer name -> ``(offset, length, dtype, dims)`` of its data in the buffer.
    """

    def __init__(self, path: Optional[str], buffer: Optional[Buffer], spans: Dict[str, Tuple[int, int, Any, Tuple[int, ...]]]):
        self.path = path
        self._buffer = buffer
        self.spans = spans

    @property
    def buffer(self) -> Buffer:
        if self._buffer is None:  # unpickled: map the file again
            with open(self.path, "rb") as handle:
                self._buffer = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
        return self._buffer

    def __getstate__(self) -> Dict[str, Any]:
        state = dict(self.__dict__)
        if self.path is not None:
            state["_buffer"] = None
        elif isinstance(self._buffer, mmap.mmap):
            state["_buffer"] = bytes(self._buffer)
        return state

    def view(self, name: str) -> np.ndarray:
        """The data of a left-out initializer, viewing the buffer (read-only, no copy)."""
        offset, length, dtype, dims = self.spans[name]
        return np.frombuffer(self.buffer, dtype=dtype, count=length // dtype.itemsize, offset=offset).reshape(dims)

    def array(self, name: str) -> np.ndarray:
        """A copy of the data of a left-out initializer."""
        return np.array(self.view(name))


def _strip_tensor(buf: Buffer, start: int, end: int, location: str,
                  spans: Dict[str, Tuple[int, int, Any, Tuple[int, ...]]]) -> Optional[bytes]:
    """The TensorProto at ``buf[start:end]`` without its data field, declared as
    external data at ``location``; None to keep it as it is."""
    name = None
    data_type = 0
    dims: List[int] = []
    data = None
    for number, wire, f_start, payload, stop in _fields(buf, start, end):
        if number == _NAME and wire == 2:
            name = bytes(buf[payload:stop]).decode("utf-8")
        elif number == _DATA_TYPE and wire == 0:
            data_type = _varint(buf, payload, stop)[0]
        elif number == _DIMS:
            if wire == 0:
                dims.append(_varint(buf, payload, stop)[0])
            elif wire == 2:
                pos = payload
                while pos < stop:
                    value, pos = _varint(buf, pos, stop)
                    dims.append(value)
        elif number == _LOCATION:
            return None  # already external
        elif number in (_RAW, _FLOATS, _DOUBLES) and wire == 2:
            data = (number, f_start, payload, stop)
    if name is None or data is None or data_type not in _STRIPPABLE:
        return None
    number, f_start, payload, stop = data
    if number == _FLOATS and data_type != onnx.TensorProto.FLOAT or number == _DOUBLES and data_type != onnx.TensorProto.DOUBLE:
        return None
    length = stop - payload
    if length < (_FLOAT_LIMIT if data_type in _FLOAT_TYPES else _OTHER_LIMIT):
        return None
    dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(data_type)).newbyteorder("<")
    if length != int(np.prod(dims, dtype=np.int64)) * dtype.itemsize:
        return None  # not what the dims say: leave it for onnx to complain about
    spans[name] = (payload, length, dtype, tuple(dims))
    info = onnx.TensorProto()
    info.data_location = onnx.TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", str(payload)), ("length", str(length))):
        entry = info.external_data.add()
        entry.key, entry.value = key, value
    return bytes(buf[start:f_start]) + bytes(buf[stop:end]) + info.SerializeToString()


def _strip_model(buf: Buffer, location: str) -> Tuple[bytes, Dict[str, Tuple[int, int, Any, Tuple[int, ...]]]]:
    """The serialized model without the data of its big initializers, and their spans."""
    spans: Dict[str, Tuple[int, int, Any, Tuple[int, ...]]] = {}
    out = []
    for number, wire, start, payload, stop in _fields(buf, 0, len(buf)):
        if number != 7 or wire != 2:  # ModelProto.graph
            out.append(bytes(buf[start:stop]))
            continue
        graph = []
        for g_number, g_wire, g_start, g_payload, g_stop in _fields(buf, payload, stop):
            tensor = None
            if g_number == 5 and g_wire == 2:  # GraphProto.initializer
                tensor = _strip_tensor(buf, g_payload, g_stop, location, spans)
            graph.append(bytes(buf[g_start:g_stop]) if tensor is None else _length_delimited(5, tensor))
        out.append(_length_delimited(7, b"".join(graph)))
    return b"".join(out), spans


def read_model(model: Any) -> Tuple[onnx.ModelProto, ModelSource]:
    """The model without the data of its big initializers, and where that data is.

    Parameters
    ----------
    model : onnx.ModelProto, path or bytes
        The model (a proto is serialized once and not modified).

    Raises
    ------
    FileNotFoundError, TypeError, ValueError
        As :func:`spikeonnx.contract.load_model`.
    """
    path = None
    if isinstance(model, onnx.ModelProto):
        buffer: Buffer = model.SerializeToString()
    elif isinstance(model, (bytes, bytearray, memoryview)):
        buffer = bytes(model)
    elif isinstance(model, (str, os.PathLike)):
        path = os.path.abspath(os.fspath(model))
        if not os.path.isfile(path):
            raise FileNotFoundError(f"ONNX model file not found: {os.fspath(model)}")
        with open(path, "rb") as handle:
            try:
                buffer = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
            except ValueError:  # an empty file cannot be mapped
                buffer = b""
    else:
        raise TypeError(f"model must be a path, bytes or onnx.ModelProto, got {type(model).__name__}")
    # in memory: onnxruntime takes the data as OrtValues, but checks the location exists
    location = os.path.basename(path) if path else "."
    try:
        light, spans = _strip_model(buffer, location)
        proto = onnx.ModelProto.FromString(light)
    except Exception:  # not a protobuf we can walk: let the full parser name the problem
        proto, _ = contract.load_model(model, load_external_data=False)
        spans = {}
    if path is not None:
        _check_external_data(proto, path, spans)
    return proto, ModelSource(path, buffer if spans else None, spans)


def _check_external_data(proto: onnx.ModelProto, path: str, ours: Dict[str, Any]) -> None:
    """Refuse external data outside the model's folder, as onnx does (onnxruntime
    would read it)."""
    folder = os.path.realpath(os.path.dirname(path))
    for tensor in proto.graph.initializer:
        if tensor.data_location != onnx.TensorProto.EXTERNAL or tensor.name in ours:
            continue
        location = next((e.value for e in tensor.external_data if e.key == "location"), "")
        target = os.path.realpath(os.path.join(folder, location))
        if os.path.isabs(location) or os.path.commonpath([folder, target]) != folder:
            raise ExternalDataError(
                f"file {path}: cannot load its external data: tensor {tensor.name!r} has its data in "
                f"{location!r}, outside the model's folder"
            )


def make_session(model: onnx.ModelProto, source: Optional[ModelSource], extra_outputs: Sequence[Tuple[str, int]] = ()) -> Any:
    """An onnxruntime session of ``model`` (the light proto of :func:`read_model`)
    with ``extra_outputs`` (tensor name, element type) exposed as graph outputs.

    Each extra output goes through an Identity of its own: onnxruntime drops the
    declared shape of a tensor that is itself a graph output, which breaks its shape
    propagation after custom ops. The proto is extended for one serialization (it
    holds no big weights) and put back.

    Returns
    -------
    (session, dict)
        The session and tensor name -> name of the output exposing it.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    # the probes keep many tensors alive at once: exact allocations instead of arena
    # chunks keep the peak memory near that of a plain session
    options.enable_cpu_mem_arena = not extra_outputs
    if any(node.domain == contract.DOMAIN for node in model.graph.node):
        from ..ops import library_path

        options.register_custom_ops_library(library_path())
    n_outputs, n_nodes, old_ir = len(model.graph.output), len(model.graph.node), model.ir_version
    taken = {o for node in model.graph.node for o in node.output} | {v.name for v in model.graph.input}
    probes: Dict[str, str] = {}
    try:
        for i, (name, elem_type) in enumerate(extra_outputs):
            probe = f"{name}__spikeonnx_probe"
            while probe in taken:
                probe += "_"
            taken.add(probe)
            probes[name] = probe
            model.graph.node.append(onnx.helper.make_node("Identity", [name], [probe], name=f"spikeonnx_probe_{i}"))
            model.graph.output.append(onnx.helper.make_tensor_value_info(probe, elem_type, None) if elem_type
                                      else onnx.helper.make_empty_tensor_value_info(probe))
        model.ir_version = min(old_ir, contract.MAX_IR_VERSION)
        blob = model.SerializeToString()
    finally:
        del model.graph.output[n_outputs:]
        del model.graph.node[n_nodes:]
        model.ir_version = old_ir
    if source is not None and source.path is not None:
        # external data (ours, pointing into the model file, or the file's own)
        # resolves against the file's folder
        options.add_session_config_entry("session.model_external_initializers_file_folder_path",
                                         os.path.dirname(source.path))
    elif source is not None and source.spans:
        names = list(source.spans)
        options.add_external_initializers(names, [ort.OrtValue.ortvalue_from_numpy(source.view(n)) for n in names])
    return ort.InferenceSession(blob, options, providers=["CPUExecutionProvider"]), probes
