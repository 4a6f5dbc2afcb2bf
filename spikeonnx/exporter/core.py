"""``export()``: Keras model -> ONNX, as a sequence of steps.

1. :mod:`~spikeonnx.exporter.convert` traces the model layer by layer (each
   layer through its export handler, :mod:`~spikeonnx.exporter.handlers`) and
   converts it with tf2onnx; spiking layers become ``spikeonnx`` nodes.
2. The pure ONNX passes of :mod:`~spikeonnx.exporter.passes` finish the graph:
   node and input/output names, symbolic batch/time dimensions, opsets and IR
   version.
3. The metadata is written through :func:`spikeonnx.contract.write_metadata`,
   the result checked with the full ONNX checker and saved.

This module is light: TensorFlow and tf2onnx are imported when a model is exported.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
import onnx

from .. import __version__
from ..contract import Metadata, write_metadata
from ..events import rewrite_events
from ..fileio import atomic_write
from ..functions import attach_functions
from . import passes
from .errors import ExportError

__all__ = ["export", "ExportError"]


def export(
    model: Any,
    path: Optional[Union[str, "os.PathLike[str]"]] = None,
    *,
    state_io: bool = False,
    opset: int = 17,
    default_seed: int = 0,
    dynamic_time: bool = True,
    check: bool = True,
    functions: bool = True,
    events: bool = True,
) -> onnx.ModelProto:
    """Export a Keras model (with KerasSpiking layers) to ONNX.

    Standard layers are converted by tf2onnx; every spiking layer (and every
    spiking cell inside a ``keras.layers.RNN``) becomes one node of the
    ``spikeonnx`` domain.

    Parameters
    ----------
    model : keras.Model
        A built Functional or Sequential model.
    path : str or os.PathLike, optional
        Where to save the ``.onnx`` file; nothing is written when omitted.
    state_io : bool
        Give every spiking layer a state input ``{layer}/state_in`` and output
        ``{layer}/state_out`` (for streaming). Stateful layers always get them.
    opset : int
        Version of the default ONNX domain, 13 to 21.
    default_seed : int
        Seed of the initial-voltage draw of SpikingActivation layers created
        without a seed (Keras draws a fresh voltage on every call there; the
        exported model needs a fixed one, recorded in the node and metadata).
    dynamic_time : bool
        Export the time axis of 3+-dimensional inputs as dynamic. If tracing
        with a dynamic time axis fails (e.g. a Flatten over time), the model's
        declared length is used instead.
    check : bool
        Run :func:`onnx.checker.check_model` (full check) on the result.
    functions : bool
        Attach every ``spikeonnx`` op's definition in standard ONNX ops as a
        model-local function (:func:`spikeonnx.functions.attach_functions`), so the
        model also runs without our op library (stock onnxruntime, other runtimes,
        ``onnx.reference``). Needs ``opset >= 15`` when the model has spiking layers.
    events : bool
        Rewrite each ``MatMul``/``Gemm``/``Conv`` fed by spikes into its event-driven
        ``spikeonnx`` op (:func:`spikeonnx.optimize`; same value, computed only where
        spikes arrived), with the standard op as its model-local function when
        ``functions`` is true.

    Returns
    -------
    onnx.ModelProto
        The exported model (IR version <= :data:`spikeonnx.contract.MAX_IR_VERSION`,
        opset ``opset``).

    Raises
    ------
    ExportError
        If the model or one of its layers cannot be exported; the message names
        the layer and how to register an export handler for it.
    TypeError
        If ``model`` is not a Keras model.
    ValueError
        On an unsupported ``opset``.
    """
    if isinstance(opset, bool) or not isinstance(opset, int) or not 13 <= opset <= 21:
        raise ValueError(f"opset must be an int from 13 to 21, got {opset!r}")
    if isinstance(default_seed, bool) or not isinstance(default_seed, (int, np.integer)):
        raise ValueError(f"default_seed must be an int, got {default_seed!r}")
    # Imported here, not at the top: the conversion imports TensorFlow and tf2onnx.
    from .convert import convert

    converted = convert(
        model, state_io=state_io, opset=opset, default_seed=int(default_seed), dynamic_time=dynamic_time
    )
    onnx_model, ctx, slots = converted.model, converted.ctx, converted.slots

    passes.name_spiking_nodes(onnx_model, converted.spiking_nodes)
    passes.rename_io(onnx_model, converted.input_names, converted.output_names)
    passes.name_dynamic_dims(onnx_model, converted.axes, converted.output_shapes)
    passes.fix_opsets_and_ir(onnx_model)
    passes.fuse_sequence_dense(onnx_model)
    if functions:
        attach_functions(onnx_model, skip_unsupported=True)
    onnx_model.graph.name = model.name
    spiking_layers = {spec.node_name: spec.layer_name for spec in ctx.markers.values()}
    metadata = Metadata(
        batch_axes={name: axes[0] for name, axes in converted.axes.items()},
        time_axes={name: axes[1] for name, axes in converted.axes.items()},
        dt=dict(ctx.dts),
        layers=passes.attribute_nodes(onnx_model, spiking_layers, ctx.scopes),
        initial_state={s.input_name: s.initial for s in slots},
        seeds=dict(ctx.seeds),
        state_io={s.input_name: s.output_name for s in slots},
    )
    write_metadata(onnx_model, metadata, __version__)
    if events:
        # After attach_functions (which knows only the spiking ops) and after the layer
        # attribution (which reads the standard op types); node names do not change.
        rewrite_events(onnx_model, functions=functions)

    if check:
        passes.check_model(onnx_model)
    if path is not None:
        _save(onnx_model, Path(path))
    return onnx_model


def _save(model: onnx.ModelProto, path: Path) -> None:
    """Write ``model`` to ``path`` through a temporary file, so a failed write leaves no half file."""
    if path.parent and not path.parent.exists():
        raise FileNotFoundError(f"cannot save ONNX model: directory {path.parent} does not exist")
    with atomic_write(path) as handle:
        handle.write(model.SerializeToString())
