"""GraphEnergy(events="measured"): synaptic events counted on the example data.

One-node graphs: the measured events equal a NumPy count made here (nonzero inputs
times the outputs each reaches; Conv taps falling in the padding do not count). Zoo
models exported with event nodes: the measured and estimated energies differ exactly
as the documented bound says (docs/op-counting.md): a ``SpikingActivation`` emits
``n / dt`` with ``n`` a whole number of spikes, the estimate charges ``n`` events per
nonzero input and the count one, so for a Dense layer on spikes

    estimated synop energy * nnz == measured synop energy * sum(n)

hence ``measured <= estimated <= max(n) * measured``, equal when no input carries two
spikes in one step.
"""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from spikeonnx.analysis import GraphEnergy
from spikeonnx.contract import DOMAIN, OPSET_VERSION
from spikeonnx.devices import DEVICES
from spikeonnx.energy import DEFAULT_DT

pytestmark = pytest.mark.needs_ops

LOIHI = DEVICES["loihi"]


def _one_node(op: str, x_shape, w: np.ndarray, **attrs) -> onnx.ModelProto:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", *x_shape[1:]])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    node = helper.make_node(op, ["x", "w"], ["y"], domain=DOMAIN, name="n0", **attrs)
    graph = helper.make_graph([node], "g", [x], [y], initializer=[numpy_helper.from_array(w, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                    helper.make_opsetid(DOMAIN, OPSET_VERSION)])
    model.ir_version = 8
    return model


def _spikes(rng: np.random.Generator, shape, density: float) -> np.ndarray:
    """Binary spikes of height 1/DEFAULT_DT."""
    return ((rng.random(shape) < density) / DEFAULT_DT).astype(np.float32)


def _conv_events(x: np.ndarray, w_shape, *, pads, strides, group) -> int:
    """Sum over outputs and taps of the nonzero inputs under the tap (zero padding
    counts nothing), times the output channels per group."""
    mask = (x != 0).sum(axis=1)  # nonzeros over channels, per (sample, position)
    mask = np.pad(mask, [(0, 0), (pads[0], pads[2]), (pads[1], pads[3])])
    out_h = (mask.shape[1] - w_shape[2]) // strides[0] + 1
    out_w = (mask.shape[2] - w_shape[3]) // strides[1] + 1
    total = 0
    for i in range(w_shape[2]):
        for j in range(w_shape[3]):
            total += int(mask[:, i: i + strides[0] * out_h: strides[0], j: j + strides[1] * out_w: strides[1]].sum())
    return total * (w_shape[0] // group)


def test_one_node_matmul_measured_equals_numpy_and_estimate():
    rng = np.random.default_rng(1)
    w = rng.standard_normal((20, 7)).astype(np.float32)
    x = _spikes(rng, (6, 20), 0.3)
    energy = GraphEnergy(_one_node("EventMatMul", x.shape, w), x, events="measured")
    (layer,) = [name for name in energy.layer_names if energy.layer_events.get(name) is not None]
    # events per sample (no time axis): nonzero inputs x 7 outputs, over 6 samples
    assert energy.layer_events[layer] == np.count_nonzero(x) * 7 / 6
    synop, _ = energy.layer_energy(layer, "loihi")
    np.testing.assert_allclose(synop, LOIHI.energy_per_synop * np.count_nonzero(x) * 7 / 6, rtol=1e-12)
    # binary spikes of height 1/dt: the estimate is the same number
    estimated = GraphEnergy(_one_node("EventMatMul", x.shape, w), x)
    np.testing.assert_allclose(estimated.layer_energy(layer, "loihi")[0], synop, rtol=1e-6)
    # a non-spiking device charges every connection either way
    assert energy.total_energy("cpu") == estimated.total_energy("cpu")


@pytest.mark.parametrize(("w_shape", "attrs"), [
    ((4, 3, 3, 3), {"pads": [1, 1, 1, 1], "strides": [2, 2]}),
    ((6, 1, 3, 2), {"pads": [0, 1, 2, 0], "strides": [1, 2], "group": 3}),
    ((2, 3, 2, 2), {}),
])
def test_one_node_conv_measured_equals_numpy(w_shape, attrs):
    rng = np.random.default_rng(2)
    group = attrs.get("group", 1)
    x = _spikes(rng, (3, w_shape[1] * group, 7, 6), 0.2)
    model = _one_node("EventConv", x.shape, rng.standard_normal(w_shape).astype(np.float32),
                      kernel_shape=list(w_shape[2:]), **attrs)
    energy = GraphEnergy(model, x, events="measured")
    expected = _conv_events(x, w_shape, pads=attrs.get("pads", [0] * 4), strides=attrs.get("strides", [1, 1]),
                            group=group)
    assert expected > 0
    (layer,) = list(energy.layer_events)
    assert energy.layer_events[layer] == expected / 3
    np.testing.assert_allclose(energy.layer_energy(layer, "loihi")[0], LOIHI.energy_per_synop * expected / 3,
                               rtol=1e-12)


def test_measured_needs_event_nodes_and_example_arrays(tmp_path):
    rng = np.random.default_rng(3)
    w = rng.standard_normal((5, 4)).astype(np.float32)
    x = _spikes(rng, (2, 5), 0.5)
    dense = _one_node("EventMatMul", x.shape, w)
    dense.graph.node[0].domain = ""
    dense.graph.node[0].op_type = "MatMul"
    with pytest.raises(ValueError, match="needs event-driven nodes.*spikeonnx.optimize"):
        GraphEnergy(dense, x, events="measured")
    # an event node on a spiking model's input receives no spikes: nothing to measure
    on_input = _one_node("EventMatMul", x.shape, w)
    on_input.graph.node.append(helper.make_node("SpikingActivation", [on_input.graph.node[0].output[0]], ["s"],
                                                domain=DOMAIN, dt=0.01, seed=1))
    on_input.graph.output[0].name = "s"
    with pytest.raises(ValueError, match="fed by spikes.*the model's input, which carries no spikes"):
        GraphEnergy(on_input, x, events="measured")
    model = _one_node("EventMatMul", x.shape, w)
    with pytest.raises(ValueError, match="example_data"):
        GraphEnergy(model, events="measured")
    from spikeonnx.analysis.rates import RateSums

    with pytest.raises(ValueError, match="carry no event counts"):
        GraphEnergy(model, RateSums(), events="measured")
    with pytest.raises(ValueError, match="events must be one of"):
        GraphEnergy(model, x, events="counted")


def _zoo_event_models():
    """Every zoo model whose export (events=True) has event nodes fed by spikes."""
    keras = pytest.importorskip("keras")
    from spikeonnx import export
    from spikeonnx.events import event_inputs
    from spikeonnx.examples.zoo import ZOO

    found = []
    for name, builder in ZOO.items():
        keras.utils.set_random_seed(1234)
        case = builder()
        model = export(case.model, events=True, **case.export_kwargs)
        if event_inputs(model):
            found.append((name, model, case.x))
    return found


@pytest.fixture(scope="module")
def zoo_event_models():
    return _zoo_event_models()


def test_zoo_measured_within_the_estimates_bound(zoo_event_models):
    from spikeonnx.events import event_inputs, event_nodes
    from spikeonnx.runtime import InferenceSession

    assert len(zoo_event_models) >= 5  # the Dense layers after spikes (see test_events)
    several = False
    for name, model, x in zoo_event_models:
        estimated = GraphEnergy(model, x)
        measured = GraphEnergy(model, x, events="measured")
        feeds = measured.graph.feeds
        producer = {out: n for n in model.graph.node for out in n.output}
        on_spikes = event_inputs(model)
        for node in event_nodes(model):
            if node.name not in on_spikes:  # on the data input: no spikes, the estimate stays
                continue
            assert node.op_type == "EventMatMul", name
            # The spikes the node reads, and their dt (through plumbing to the SpikingActivation).
            probe = onnx.ModelProto.FromString(model.SerializeToString())
            probe.graph.output.append(helper.make_tensor_value_info(node.input[0], TensorProto.FLOAT, None))
            spikes = InferenceSession(probe).run([node.input[0]], feeds)[0]
            source = producer[node.input[0]]
            while source.op_type != "SpikingActivation":
                source = producer[source.input[0]]
            dt = np.float32(next(a.f for a in source.attribute if a.name == "dt"))
            n = np.rint(np.abs(spikes.astype(np.float64)) * dt)
            np.testing.assert_allclose(np.abs(spikes) * dt, n, atol=1e-5)  # whole spikes
            w = numpy_helper.to_array(next(t for t in model.graph.initializer if t.name == node.input[1]))
            steps = spikes.size // w.shape[0]
            nnz, total = int(np.count_nonzero(n)), float(n.sum())
            assert nnz > 0, name
            layer = measured.graph.graph.nodes[node.name]["layer"]
            np.testing.assert_allclose(measured.layer_events[layer], nnz * w.shape[1] / steps, rtol=1e-12)
            est, mea = estimated.layer_energy(layer, "loihi")[0], measured.layer_energy(layer, "loihi")[0]
            # the documented bound, exactly: estimate / measurement = spikes / nonzero inputs
            np.testing.assert_allclose(est * nnz, mea * total, rtol=1e-6, err_msg=name)
            assert mea <= est * (1 + 1e-6) and est <= mea * n.max() * (1 + 1e-6), name
            several |= n.max() > 1
        # layers without event nodes are charged the same
        for layer in measured.layer_names:
            if layer not in measured.layer_events:
                assert measured.layer_energy(layer, "loihi") == estimated.layer_energy(layer, "loihi")
        assert measured.total_energy("cpu") == estimated.total_energy("cpu")
    assert several  # the bound is not only tested where it is an equality


def test_cli_energy_events_measured(tmp_path, zoo_event_models, capsys):
    from spikeonnx.cli import main

    name, model, x = zoo_event_models[0]
    path = tmp_path / "m.onnx"
    onnx.save(model, path)
    np.save(tmp_path / "x.npy", x)
    reports = {}
    for events in ("estimated", "measured"):
        assert main(["energy", str(path), "--data", str(tmp_path / "x.npy"), "--device", "loihi", "--json",
                     "--events", events]) == 0
        reports[events] = json.loads(capsys.readouterr().out)
    expected = GraphEnergy(model, x, events="measured")
    report = reports["measured"]
    assert report["events"] == "measured" and reports["estimated"]["events"] == "estimated"
    assert report["total_energy"]["loihi"] == expected.total_energy("loihi")
    events = {layer["name"]: layer["synaptic_events"] for layer in report["layers"]}
    assert {k: v for k, v in events.items() if v is not None} == expected.layer_events
    assert all(layer["synaptic_events"] is None for layer in reports["estimated"]["layers"])
    # without event nodes: one line on stderr, exit code 2
    dense = _one_node("EventMatMul", (2, 5), np.ones((5, 3), np.float32))
    dense.graph.node[0].domain, dense.graph.node[0].op_type = "", "MatMul"
    onnx.save(dense, tmp_path / "dense.onnx")
    np.save(tmp_path / "d.npy", np.ones((2, 5), np.float32))
    assert main(["energy", str(tmp_path / "dense.onnx"), "--data", str(tmp_path / "d.npy"),
                 "--events", "measured"]) == 2
    assert "needs event-driven nodes" in capsys.readouterr().err
