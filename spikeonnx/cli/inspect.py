"""``spikeonnx inspect``: what an ONNX file holds and what can run it."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Dict, List

import onnx

from .. import contract
from . import CLIError, subcommand


def _dims(value: onnx.ValueInfoProto) -> Any:
    """Declared dims (int, symbolic name, or None), or None when no shape is declared."""
    tensor = value.type.tensor_type
    if not value.type.HasField("tensor_type") or not tensor.HasField("shape"):
        return None
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in tensor.shape.dim]


def _dtype(value: onnx.ValueInfoProto) -> str:
    if not value.type.HasField("tensor_type"):
        return value.type.WhichOneof("value") or "?"
    return onnx.TensorProto.DataType.Name(value.type.tensor_type.elem_type).lower()


def _attributes(node: onnx.NodeProto) -> Dict[str, Any]:
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _library_verdict() -> tuple:
    from ..ops import library_path

    try:
        library_path()
        return True, "onnxruntime with the spikeonnx op library"
    except FileNotFoundError as err:
        return False, f"the op library is not built ({' '.join(str(err).split())})"


def describe(model: onnx.ModelProto, where: str) -> Dict[str, Any]:
    """Everything ``inspect`` reports about ``model``, as JSON-able data.

    Raises
    ------
    spikeonnx.contract.MetadataError
        If our metadata is malformed.
    """
    meta = contract.read_metadata(model, where)
    states_in = set(meta.state_io)
    states_out = set(meta.state_io.values())

    def io(values: Any, kind: str) -> List[Dict[str, Any]]:
        initializers = {t.name for t in model.graph.initializer}
        return [{
            "name": v.name, "dtype": _dtype(v), "shape": _dims(v),
            "batch_axis": meta.batch_axes.get(v.name), "time_axis": meta.time_axes.get(v.name),
            "state": v.name in (states_in if kind == "input" else states_out),
        } for v in values if v.name not in initializers]

    ours = [n for n in model.graph.node if n.domain == contract.DOMAIN]
    spiking = []
    for node in ours:
        if node.op_type not in contract.OP_TYPES:
            continue
        attrs = _attributes(node)
        state_in = [name for name in node.input[1:] if name in states_in]
        spiking.append({
            "node": node.name, "op": node.op_type, "keras_layer": meta.layers.get(node.name),
            "dt": meta.dt.get(node.name, attrs.get("dt")),
            "seed": meta.seeds.get(node.name, attrs.get("seed") if node.op_type == "SpikingActivation" else None),
            "time_major": bool(attrs.get("time_major", 0)),
            "state_input": state_in[0] if state_in else None,
            "initial_state": meta.initial_state.get(state_in[0]) if state_in else None,
        })
    events = [{"node": n.name, "op": n.op_type, "keras_layer": meta.layers.get(n.name)}
              for n in ours if n.op_type in contract.EVENT_OP_TYPES]
    functions = sorted({f.name for f in model.functions if f.domain == contract.DOMAIN})
    used = sorted({n.op_type for n in ours})
    without_body = [op for op in used if op not in functions]
    reference_missing = [op for op in without_body if op not in contract.OP_TYPES]
    runtimes = {
        "onnxruntime": (True, "stock onnxruntime, no op library: every spikeonnx op has a function body")
        if not without_body else (False, f"needs the op library: no function body for {', '.join(without_body)}"),
        "spikeonnx.InferenceSession": _library_verdict(),
        "onnx.reference": (True, "ReferenceEvaluator(model) runs the function bodies") if not without_body
        else (True, "ReferenceEvaluator(model, new_ops=spikeonnx.reference.REFERENCE_OPS)")
        if not reference_missing
        else (False, f"no function body and no reference op for {', '.join(reference_missing)}"),
    }
    if not ours:
        runtimes["onnxruntime"] = (True, "stock onnxruntime: the model uses no spikeonnx op")
        runtimes["onnx.reference"] = (True, "ReferenceEvaluator(model)")
    return {
        "model": where[5:] if where.startswith("file ") else where,
        "ir_version": model.ir_version,
        "opsets": {(entry.domain or "ai.onnx"): entry.version for entry in model.opset_import},
        "producer": f"{model.producer_name} {model.producer_version}".strip(),
        "spikeonnx_version": meta.version,
        "nodes": len(model.graph.node),
        "inputs": io(model.graph.input, "input"),
        "outputs": io(model.graph.output, "output"),
        "spiking_nodes": spiking,
        "state_io": dict(meta.state_io),
        "event_nodes": events,
        "functions": functions,
        "runtimes": {name: {"can_run": ok, "how": how} for name, (ok, how) in runtimes.items()},
    }


def _shape(entry: Dict[str, Any]) -> str:
    if entry["shape"] is None:
        return "(any shape)"
    return "(" + ", ".join("?" if d is None else str(d) for d in entry["shape"]) + ")"


def _io_line(entry: Dict[str, Any]) -> str:
    axes = [f"{kind} axis {entry[kind + '_axis']}" for kind in ("batch", "time") if entry[kind + "_axis"] is not None]
    extra = ", ".join(axes + (["state"] if entry["state"] else []))
    return f"  {entry['name']}: {entry['dtype']} {_shape(entry)}" + (f"  [{extra}]" if extra else "")


def format_description(info: Dict[str, Any]) -> str:
    """The text ``inspect`` prints for :func:`describe`'s result."""
    opsets = ", ".join(f"{domain} {version}" for domain, version in info["opsets"].items())
    lines = [
        f"{info['model']}: {info['nodes']} nodes, IR {info['ir_version']}, opsets {opsets}",
        f"producer: {info['producer'] or 'unknown'}"
        + ("" if info["spikeonnx_version"] else " (no spikeonnx metadata)"),
        "inputs:", *(_io_line(e) for e in info["inputs"]),
        "outputs:", *(_io_line(e) for e in info["outputs"]),
    ]
    lines.append(f"spiking nodes: {len(info['spiking_nodes']) or 'none'}")
    for n in info["spiking_nodes"]:
        parts = [f"dt {n['dt']:g} s" if isinstance(n["dt"], (int, float)) else "dt ?"]
        if n["seed"] is not None and n["state_input"] is None:
            parts.append(f"seed {n['seed']}")
        if n["time_major"]:
            parts.append("time-major")
        if n["state_input"]:
            kind = (n["initial_state"] or {}).get("kind", "zeros")
            parts.append(f"state input {n['state_input']} (starts: {kind})")
        layer = f" (Keras layer {n['keras_layer']})" if n["keras_layer"] else ""
        lines.append(f"  {n['node']}: {n['op']}{layer}, {', '.join(parts)}")
    if info["state_io"]:
        lines.append("state inputs -> outputs:")
        lines += [f"  {a} -> {b}" for a, b in info["state_io"].items()]
    else:
        lines.append("state inputs/outputs: none")
    events = info["event_nodes"]
    lines.append(f"event-driven nodes: {len(events)}" + (
        " (" + ", ".join(f"{e['op']} {e['node']}" + (f" in Keras layer {e['keras_layer']}" if e["keras_layer"] else "")
                         for e in events) + ")" if events else ""))
    lines.append("function bodies: " + (", ".join(info["functions"]) if info["functions"] else "none"))
    lines.append("runs in:")
    for name, verdict in info["runtimes"].items():
        lines.append(f"  {name}: {'yes' if verdict['can_run'] else 'no'} - {verdict['how']}")
    return "\n".join(lines)


@subcommand("inspect", help="Show what an ONNX model holds: inputs and outputs, spiking nodes, states, "
                            "function bodies, event-driven nodes, and which runtimes can run it.")
def configure(parser: argparse.ArgumentParser):
    parser.add_argument("model", help="the ONNX model file")
    parser.add_argument("--json", action="store_true", help="print the description as JSON")

    def run(args: argparse.Namespace) -> int:
        if not Path(args.model).is_file():
            raise CLIError(f"model file not found: {args.model}")
        # weights are not needed: external data stays where it is
        model, where = contract.load_model(args.model, load_external_data=False)
        info = describe(model, where)
        print(json.dumps(info, indent=2) if args.json else format_description(info))
        return 0

    return run
