"""Input rates of each layer, from running the model once on example data.

A layer's rate is the mean magnitude of the tensors entering it over all the
example data (batch, time and units), as ``ModelEnergy`` defines it: for a layer
fed by spikes of height ``1/dt`` this is the mean firing rate in Hz. The model runs
once in onnxruntime (with the ``spikeonnx`` op library when the model uses our
ops), with every tensor that enters a layer exposed as an extra graph output.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, List, Mapping, Sequence, Union

import numpy as np
import onnx

from .graph import AnalysisGraph, _dims, _elem_type
from .stats import TensorInfo

__all__ = ["ExampleData", "load_example_data", "compute_rates"]

ExampleData = Union[np.ndarray, Mapping[str, Any], str, os.PathLike, Sequence[Any]]

# onnxruntime reads IR versions up to 13; models written by newer onnx say 14.
_MAX_IR_VERSION = 10


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
        Input name -> array of the input's dtype.

    Raises
    ------
    FileNotFoundError
        For a missing data file.
    ValueError
        For unreadable files, missing or unknown inputs, or arrays whose rank,
        sizes or dtype do not fit the input.
    """
    names = graph.input_names
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
                data_names = [n for n in names if n not in graph.state_inputs]
            if len(data_names) == 1 and len(arrays) == 1 and data_names[0] not in arrays:
                arrays = {data_names[0]: next(iter(arrays.values()))}
            data = arrays
        else:
            data = loaded
    data_names = [n for n in names if n not in graph.state_inputs]
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
    missing = [n for n in names if n not in feeds and n not in graph.state_inputs]
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
        info = TensorInfo(name, _dims(value.type), _elem_type(value.type))
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
        if info.dtype is not None:
            arr = arr.astype(info.dtype, copy=False)
        out[name] = np.ascontiguousarray(arr)
    for name in graph.state_inputs:
        if name not in out:
            out[name] = _initial_state(graph, name, out)
    return out


def _initial_state(graph: AnalysisGraph, name: str, feeds: Dict[str, np.ndarray]) -> np.ndarray:
    """The value a state input starts from when the caller does not give it, as the
    exporter's ``spikeonnx.initial_state`` metadata describes it."""
    from .graph import METADATA_INITIAL_STATE

    batch = None
    for other, arr in feeds.items():
        axis = graph.batch_axes.get(other)
        if axis is not None and other not in graph.state_inputs:
            batch = arr.shape[axis]
            break
    value = next(v for v in graph.model.graph.input if v.name == name)
    info = TensorInfo(name, _dims(value.type), _elem_type(value.type))
    b_axis = graph.batch_axes.get(name)
    shape = []
    for axis, d in enumerate(info.shape or ()):
        if axis == b_axis and batch is not None:
            shape.append(batch)
        elif isinstance(d, int):
            shape.append(d)
        else:
            raise ValueError(f"cannot build the initial value of state input {name!r}: axis {axis} has no known size")
    spec = graph.metadata.get(METADATA_INITIAL_STATE, {}).get(name, {"kind": "zeros"})
    kind = spec.get("kind") if isinstance(spec, dict) else None
    dtype = info.dtype or np.dtype(np.float32)
    if kind == "zeros":
        return np.zeros(shape, dtype)
    if kind == "constant":
        per_sample = np.asarray(spec.get("value"), dtype=dtype)
        return np.ascontiguousarray(np.broadcast_to(per_sample, shape)).astype(dtype)
    if kind == "uniform_seed":
        from ..reference import tf_stateless_uniform

        return np.asarray(tf_stateless_uniform(shape, int(spec["seed"])), dtype=dtype)
    raise ValueError(f"state input {name!r}: unknown initial_state kind {kind!r} in the model metadata")


def _uses_spikeonnx_ops(model: onnx.ModelProto) -> bool:
    return any(node.domain == "spikeonnx" for node in model.graph.node)


def _make_session(model_bytes: bytes, needs_library: bool) -> Any:
    """An onnxruntime session for the model, with our op library registered."""
    try:
        from ..runtime import InferenceSession
    except ImportError:
        InferenceSession = None
    if InferenceSession is not None:
        return InferenceSession(model_bytes)
    import onnxruntime as ort  # pragma: no cover - fallback while runtime is absent

    options = ort.SessionOptions()
    if needs_library:
        from ..ops import library_path

        options.register_custom_ops_library(library_path())
    return ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])


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
        the layer; 0 for a layer no float tensor enters).
    """
    needed: List[str] = []
    for layer in graph.layers:
        for name in layer.inputs:
            if name not in feeds and name not in needed:
                needed.append(name)
    model = graph.model
    values: Dict[str, np.ndarray] = dict(feeds)
    if needed:
        n_outputs = len(model.graph.output)
        n_nodes = len(model.graph.node)
        old_ir = model.ir_version
        taken = {o for node in model.graph.node for o in node.output} | {v.name for v in model.graph.input}
        probes = []
        try:
            # Expose each layer input through an Identity of its own: onnxruntime drops
            # the declared shape of a tensor that is itself a graph output, which breaks
            # its shape propagation after custom ops. The caller's proto is extended for
            # one serialization (no copy of the weights) and then put back.
            for i, name in enumerate(needed):
                probe = f"{name}__spikeonnx_rate_probe"
                while probe in taken:
                    probe += "_"
                probes.append(probe)
                model.graph.node.append(
                    onnx.helper.make_node("Identity", [name], [probe], name=f"spikeonnx_rate_probe_{i}")
                )
                info = graph.tensors.get(name)
                model.graph.output.append(onnx.helper.make_tensor_value_info(probe, info.elem_type, None))
            model.ir_version = min(old_ir, _MAX_IR_VERSION)
            blob = model.SerializeToString()
        finally:
            del model.graph.output[n_outputs:]
            del model.graph.node[n_nodes:]
            model.ir_version = old_ir
        session = _make_session(blob, _uses_spikeonnx_ops(model))
        try:
            results = session.run(probes, feeds)
        except Exception as err:
            raise ValueError(f"{graph.label}: running the model on the example data failed: {err}") from None
        values.update(zip(needed, results))
    rates: Dict[str, float] = {}
    for layer in graph.layers:
        total = 0.0
        count = 0
        for name in layer.inputs:
            arr = np.asarray(values[name])
            total += float(np.abs(arr, dtype=np.float64).sum())
            count += arr.size
        rates[layer.name] = total / count if count else 0.0
    return rates
