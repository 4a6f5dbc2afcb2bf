"""ONNX operator schemas of the ``spikeonnx`` domain (version 1).

Registering the schemas with :func:`register_schemas` lets the standard ONNX tooling
understand models that contain our nodes: :func:`onnx.checker.check_model` with
``full_check=True`` validates their attributes and types, and
:func:`onnx.shape_inference.infer_shapes` computes the type and shape of every
output (sequence outputs keep the input shape; final states drop the time axis).

onnxruntime does not read these Python schemas: it gets the ops from the compiled
library (:mod:`spikeonnx.ops`). The schemas only serve checking and inference.
"""

from __future__ import annotations

import math
import threading
from typing import Callable, List, Optional, Sequence

import onnx
import onnx.defs
import onnx.helper
from onnx import OperatorSetIdProto, TypeProto
from onnx.shape_inference import InferenceError

from .contract import DOMAIN, EVENT_OP_TYPES, OP_TYPES, OPSET_VERSION

# DOMAIN, OP_TYPES and EVENT_OP_TYPES are re-exported from spikeonnx.contract; OPSET is an older name
# of contract.OPSET_VERSION, kept for callers.
__all__ = ["DOMAIN", "OPSET", "OP_TYPES", "EVENT_OP_TYPES", "register_schemas", "make_opset_imports"]

OPSET = OPSET_VERSION

_FLOAT_TYPES = ["tensor(float)", "tensor(double)"]
_lock = threading.Lock()

_Schema = onnx.defs.OpSchema
_Param = _Schema.FormalParameter
_Option = _Schema.FormalParameterOption
_Attr = _Schema.Attribute


# ---------------------------------------------------------------------------
# Shape inference
# ---------------------------------------------------------------------------


def _int_attribute(ctx, name: str, default: int) -> int:
    att = ctx.get_attribute(name)
    return default if att is None else int(att.i)


def _check_attributes(ctx, op_type: str) -> int:
    """Validate dt / time_major and return the time axis (0 or 1)."""
    dt_att = ctx.get_attribute("dt")
    if dt_att is not None:  # its absence is reported by the checker itself
        if not (dt_att.f > 0 and math.isfinite(dt_att.f)):
            raise InferenceError(f"{op_type}: attribute 'dt' must be finite and > 0, got {dt_att.f!r}")
    time_major = _int_attribute(ctx, "time_major", 0)
    if time_major not in (0, 1):
        raise InferenceError(f"{op_type}: attribute 'time_major' must be 0 or 1, got {time_major}")
    return 0 if time_major else 1


def _sequence_type(ctx, op_type: str) -> Optional[TypeProto]:
    """Type of input 0, after checking its rank is at least 2 (batch and time)."""
    if not ctx.has_input(0):
        return None
    in_type = ctx.get_input_type(0)
    if in_type is None or not in_type.HasField("tensor_type"):
        return None
    tensor = in_type.tensor_type
    if tensor.HasField("shape") and len(tensor.shape.dim) < 2:
        raise InferenceError(
            f"{op_type}: input 0 must have at least 2 dimensions (batch and time), "
            f"got rank {len(tensor.shape.dim)}"
        )
    return in_type


def _state_type(seq_type: TypeProto, time_axis: int, extra_axis: Optional[int] = None) -> TypeProto:
    """Build the (B, *S) (or (B, extra, *S)) state type from the sequence type."""
    state = TypeProto()
    state.tensor_type.elem_type = seq_type.tensor_type.elem_type
    if seq_type.tensor_type.HasField("shape"):
        dims = list(seq_type.tensor_type.shape.dim)
        del dims[time_axis]  # leaves (B, *S) for both layouts
        shape = state.tensor_type.shape
        shape.dim.add().CopyFrom(dims[0])
        if extra_axis is not None:
            shape.dim.add().dim_value = extra_axis
        for dim in dims[1:]:
            shape.dim.add().CopyFrom(dim)
    return state


def _check_input_rank(ctx, op_type: str, index: int, name: str, max_rank: int) -> None:
    """Reject an auxiliary input whose known rank exceeds what may broadcast."""
    if not ctx.has_input(index):
        return
    in_type = ctx.get_input_type(index)
    if in_type is None or not in_type.HasField("tensor_type") or not in_type.tensor_type.HasField("shape"):
        return
    rank = len(in_type.tensor_type.shape.dim)
    if rank > max_rank:
        raise InferenceError(f"{op_type}: input '{name}' has rank {rank}, more than the {max_rank} allowed")


def _dims_text(dims) -> str:
    """"(B, 2, 3)" for a list of TensorShapeProto dimensions; "?" for unknown ones."""
    parts = [str(d.dim_value) if d.HasField("dim_value") else (d.dim_param or "?") for d in dims]
    return "(" + ", ".join(parts) + ")"


def _check_alpha_state(ctx, seq_type: TypeProto, time_axis: int) -> None:
    """Reject an Alpha ``initial_state`` (input 3) that cannot be (B, 2, *S) or (1, 2, *S).

    Only what is statically known is checked: the rank, the stage axis of 2 and the
    unit dimensions (the batch may be B or 1).
    """
    if not ctx.has_input(3):
        return
    in_type = ctx.get_input_type(3)
    if in_type is None or not in_type.HasField("tensor_type") or not in_type.tensor_type.HasField("shape"):
        return
    expected = _state_type(seq_type, time_axis, 2).tensor_type.shape.dim
    dims = in_type.tensor_type.shape.dim

    problem = len(dims) != len(expected)
    for have, want in list(zip(dims, expected, strict=False))[1:]:
        if not problem and have.HasField("dim_value") and want.HasField("dim_value"):
            problem = have.dim_value != want.dim_value
    if not problem and dims[0].HasField("dim_value") and expected[0].HasField("dim_value"):
        problem = dims[0].dim_value not in (1, expected[0].dim_value)
    if problem:
        raise InferenceError(
            f"Alpha: input 'initial_state' has shape {_dims_text(dims)}, "
            f"expected (B, 2, *S) = {_dims_text(expected)} (or a batch of 1)"
        )


def _make_inference(op_type: str, state_extra: Optional[int]) -> Callable:
    def infer(ctx) -> None:
        time_axis = _check_attributes(ctx, op_type)
        seq_type = _sequence_type(ctx, op_type)
        if seq_type is None:
            return
        rank = len(seq_type.tensor_type.shape.dim) if seq_type.tensor_type.HasField("shape") else None
        if rank is not None:
            # The state-shaped inputs have rank (B, *S) = rank - 1 at most.
            if op_type == "SpikingActivation":
                _check_input_rank(ctx, op_type, 1, "initial_voltage", rank - 1)
            else:
                _check_input_rank(ctx, op_type, 1, "tau", rank - 1)
                _check_input_rank(ctx, op_type, 2, "initial_level", rank - 1)
                if op_type == "Alpha":
                    _check_alpha_state(ctx, seq_type, time_axis)
        ctx.set_output_type(0, seq_type)
        if ctx.get_num_outputs() > 1 and ctx.has_output(1):
            ctx.set_output_type(1, _state_type(seq_type, time_axis, state_extra))

    return infer


# ---------------------------------------------------------------------------
# Schemas
# ---------------------------------------------------------------------------

_COMMON_ATTRS = [
    _Attr("dt", _Schema.AttrType.FLOAT, "Length of one timestep in seconds; > 0.", required=True),
    _Attr(
        "time_major",
        onnx.helper.make_attribute("time_major", 0),
        "0: sequences are (batch, time, *units); 1: (time, batch, *units). States are always batch-first.",
    ),
]


def _build_schemas() -> List[onnx.defs.OpSchema]:
    spiking = _Schema(
        "SpikingActivation",
        DOMAIN,
        OPSET_VERSION,
        "Integrate-and-fire spike generation: per element and step, v += rate*dt; "
        "n = floor(v); v -= n; spike = n/dt. Without initial_voltage, the voltage starts "
        "from TensorFlow's stateless uniform draw seeded with (seed, seed).",
        inputs=[
            _Param("rates", "T", "Firing rates, (B, T, *S) or (T, B, *S)."),
            _Param("initial_voltage", "T", "Initial voltage, (B, *S).", param_option=_Option.Optional),
        ],
        outputs=[
            _Param("spikes", "T", "Spikes, same shape as rates."),
            _Param("final_voltage", "T", "Voltage after the last step, (B, *S).", param_option=_Option.Optional),
        ],
        type_constraints=[("T", _FLOAT_TYPES, "Floating-point tensors.")],
        attributes=[
            *_COMMON_ATTRS,
            _Attr(
                "seed",
                onnx.helper.make_attribute("seed", 0),
                "Seed of the initial voltage draw, used when initial_voltage is absent.",
            ),
        ],
    )
    spiking.set_type_and_shape_inference_function(_make_inference("SpikingActivation", None))

    def filter_schema(
        name: str, doc: str, state_doc: str, extra: Optional[int], extra_inputs: Sequence[_Param] = ()
    ) -> onnx.defs.OpSchema:
        schema = _Schema(
            name,
            DOMAIN,
            OPSET_VERSION,
            doc,
            inputs=[
                _Param("x", "T", "Input sequence, (B, T, *S) or (T, B, *S)."),
                _Param("tau", "T", "Time constants, broadcastable to (1, *S); clamped below at 1e-8."),
                _Param("initial_level", "T", "Initial level, broadcastable to (B, *S)."),
                *extra_inputs,
            ],
            outputs=[
                _Param("y", "T", "Filtered sequence, same shape as x."),
                _Param("final_" + ("state" if extra else "level"), "T", state_doc, param_option=_Option.Optional),
            ],
            type_constraints=[("T", _FLOAT_TYPES, "Floating-point tensors.")],
            attributes=list(_COMMON_ATTRS),
        )
        schema.set_type_and_shape_inference_function(_make_inference(name, extra))
        return schema

    lowpass = filter_schema(
        "Lowpass",
        "First-order lowpass: a = exp(-dt/max(tau, 1e-8)); y_t = (1-a)*x_t + a*y_{t-1}; "
        "y_{-1} = initial_level.",
        "Filter level after the last step, (B, *S).",
        None,
    )
    alpha = filter_schema(
        "Alpha",
        "Alpha filter (two cascaded lowpasses), exact zero-order-hold discretisation; "
        "y_t = s2. The state (s1, s2) starts at rest at (initial_level, initial_level), "
        "or at initial_state when that input is given.",
        "State after the last step, (B, 2, *S): [:, 0] = s1, [:, 1] = s2.",
        2,
        [
            _Param(
                "initial_state",
                "T",
                "Full initial state (s1, s2), (B, 2, *S) or (1, 2, *S); overrides initial_level.",
                param_option=_Option.Optional,
            )
        ],
    )
    return [spiking, lowpass, alpha]


def _dims(type_proto: TypeProto) -> Optional[list]:
    """The dims of a tensor type (dim protos), or None without a shape."""
    tensor = type_proto.tensor_type
    return list(tensor.shape.dim) if tensor.HasField("shape") else None


def _event_output(ctx, dims: Optional[list]) -> None:
    """Output 0 gets input 0's element type and ``dims`` (dim protos; None: no shape)."""
    out = TypeProto()
    out.tensor_type.elem_type = ctx.get_input_type(0).tensor_type.elem_type
    if dims is not None:
        out.tensor_type.shape.SetInParent()
        for dim in dims:
            out.tensor_type.shape.dim.add().CopyFrom(dim)
    ctx.set_output_type(0, out)


def _infer_event_matmul(ctx) -> None:
    x, w = _dims(ctx.get_input_type(0)), _dims(ctx.get_input_type(1))
    if x and w is not None and len(w) == 2:
        _event_output(ctx, x[:-1] + [w[1]])
    else:
        _event_output(ctx, None)


def _infer_event_gemm(ctx) -> None:
    a, b = _dims(ctx.get_input_type(0)), _dims(ctx.get_input_type(1))
    if a is not None and b is not None and len(a) == 2 and len(b) == 2:
        _event_output(ctx, [a[0], b[0] if _int_attribute(ctx, "transB", 0) else b[1]])
    else:
        _event_output(ctx, None)


def _infer_event_conv(ctx) -> None:
    x, w = _dims(ctx.get_input_type(0)), _dims(ctx.get_input_type(1))
    if x is None or w is None or len(x) != len(w) or len(x) < 3:
        _event_output(ctx, None)
        return
    # Batch and channels; spatial sizes are left to onnxruntime (computed when it runs).
    _event_output(ctx, [x[0], w[0]] + [onnx.TensorShapeProto.Dimension() for _ in x[2:]])


def _build_event_schemas() -> List[onnx.defs.OpSchema]:
    def schema(name: str, doc: str, inputs, attributes, infer) -> onnx.defs.OpSchema:
        op = _Schema(name, DOMAIN, OPSET_VERSION, doc, inputs=inputs,
                     outputs=[_Param("y", "T", "The standard op's output.")],
                     type_constraints=[("T", _FLOAT_TYPES, "Floating-point tensors.")], attributes=attributes)
        op.set_type_and_shape_inference_function(infer)
        return op

    ints = _Schema.AttrType.INTS
    return [
        schema("EventMatMul", "MatMul x (..., K) @ W (K, N), event-driven over the nonzeros of x.",
               [_Param("x", "T", "Input (..., K), mostly zeros."), _Param("W", "T", "Weight (K, N).")],
               [], _infer_event_matmul),
        schema("EventGemm", "Gemm alpha * A B' + beta * C with transA = 0, event-driven over the nonzeros of A.",
               [_Param("A", "T", "Input (M, K), mostly zeros."), _Param("B", "T", "Weight (K, N), or (N, K) with transB."),
                _Param("C", "T", "Bias broadcastable to (M, N).", param_option=_Option.Optional)],
               [_Attr("alpha", onnx.helper.make_attribute("alpha", 1.0), "Scale of A B'."),
                _Attr("beta", onnx.helper.make_attribute("beta", 1.0), "Scale of C."),
                _Attr("transA", onnx.helper.make_attribute("transA", 0), "Must be 0."),
                _Attr("transB", onnx.helper.make_attribute("transB", 0), "1: B is (N, K).")],
               _infer_event_gemm),
        schema("EventConv", "Conv (1-D or 2-D, as ONNX Conv), event-driven over the nonzeros of X.",
               [_Param("X", "T", "Input (N, C, *spatial), mostly zeros."),
                _Param("W", "T", "Weight (M, C/group, *kernel)."),
                _Param("B", "T", "Bias (M,).", param_option=_Option.Optional)],
               [_Attr("auto_pad", onnx.helper.make_attribute("auto_pad", "NOTSET"), "As Conv."),
                _Attr("dilations", ints, "As Conv.", required=False),
                _Attr("group", onnx.helper.make_attribute("group", 1), "As Conv."),
                _Attr("kernel_shape", ints, "As Conv.", required=False),
                _Attr("pads", ints, "As Conv.", required=False),
                _Attr("strides", ints, "As Conv.", required=False)],
               _infer_event_conv),
    ]


def _is_registered(op_type: str) -> bool:
    try:
        onnx.defs.get_schema(op_type, OPSET_VERSION, DOMAIN)
    except onnx.defs.SchemaError:
        return False
    return True


def register_schemas() -> None:
    """Register the ``spikeonnx`` operator schemas with ONNX (idempotent).

    Safe to call any number of times, from several modules or threads: operators
    whose schema is already known to :mod:`onnx.defs` are left alone.
    """
    with _lock:
        missing = [name for name in (*OP_TYPES, *EVENT_OP_TYPES) if not _is_registered(name)]
        if not missing:
            return
        for schema in _build_schemas() + _build_event_schemas():
            if schema.name in missing:
                onnx.defs.register_schema(schema)


def make_opset_imports(default_opset: int = 17) -> List[OperatorSetIdProto]:
    """Return the ``opset_import`` list for a model that uses our ops.

    Parameters
    ----------
    default_opset : int
        Version of the default ONNX domain (``""``); versions up to 21 are known
        to work with the supported onnxruntime.

    Returns
    -------
    list of onnx.OperatorSetIdProto
        The default domain at ``default_opset`` and ``spikeonnx`` at :data:`spikeonnx.contract.OPSET_VERSION`.

    Raises
    ------
    ValueError
        If ``default_opset`` is not a positive integer.
    """
    if isinstance(default_opset, bool) or not isinstance(default_opset, int) or default_opset < 1:
        raise ValueError(f"default_opset must be a positive integer, got {default_opset!r}")
    return [onnx.helper.make_opsetid("", default_opset), onnx.helper.make_opsetid(DOMAIN, OPSET_VERSION)]
