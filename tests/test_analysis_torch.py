"""GraphEnergy on graphs PyTorch exports, against PyTorch's own multiply-accumulate count.

The reference is ``torch.utils.flop_counter.FlopCounterMode`` / 2, computed in the
test on the same module and data, with gradients enabled (under ``no_grad`` PyTorch
fuses attention into an op the counter does not see). Both exporters (legacy
TorchScript, ``dynamo=False``, and the default dynamo one), with batches of 1, 2
and a dynamic batch, sequence-first and batch-first layouts: the connections
GraphEnergy counts per sample must equal the counter's total over the batch
divided by the batch size, exactly.
"""

import io
import warnings

import numpy as np
import onnx
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn
pytest.importorskip("onnxscript")  # the dynamo exporter

from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from spikeonnx.analysis import GraphEnergy  # noqa: E402

LEGACY, DYNAMO = "legacy", "dynamo"


def export(module, args, exporter, *, dynamic_axes=None):
    """The ONNX model of ``module`` on ``args``; ``dynamic_axes``: input index -> dynamic axis."""
    names = [f"x{i}" for i in range(len(args))]
    kwargs = {}
    if dynamic_axes:
        if exporter == DYNAMO:
            kwargs["dynamic_shapes"] = tuple(
                {dynamic_axes[i]: torch.export.Dim("batch")} if i in dynamic_axes else None for i in range(len(args))
            )
        else:
            kwargs["dynamic_axes"] = {names[i]: {axis: "batch"} for i, axis in dynamic_axes.items()}
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporters' deprecation and fallback notices
        torch.onnx.export(module, args, buf, dynamo=exporter == DYNAMO, input_names=names,
                          opset_version=18 if exporter == DYNAMO else 17, verbose=False, **kwargs)
    return onnx.load_from_string(buf.getvalue())


def macs(fn, args):
    """PyTorch's multiply-accumulate count of ``fn(*args)`` (flops / 2), gradients on."""
    with torch.enable_grad(), FlopCounterMode(display=False) as counter:
        fn(*args)
    return counter.get_total_flops() // 2


def connections(model, **kwargs):
    """Total connections per sample, with no warning allowed (every op has a spec)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        energy = GraphEnergy(model, **kwargs)
    return sum(stats["connections"] for stats in energy.layer_stats.values()), energy


def check(module, make_args, exporter, batch, *, batch_axis=0, **kwargs):
    """Export ``module`` for ``batch`` (1, 2 or "dynamic") and compare per-sample counts."""
    size = 2 if batch == "dynamic" else batch
    args = make_args(size)
    expected = macs(module, args)
    assert expected % size == 0
    dynamic = {i: batch_axis for i in range(len(args))} if batch == "dynamic" else None
    model = export(module, args, exporter, dynamic_axes=dynamic)
    if batch == "dynamic":
        dim = model.graph.input[0].type.tensor_type.shape.dim[batch_axis]
        assert not dim.HasField("dim_value")  # the export really has a dynamic batch
    counted, energy = connections(model, batch_axis=batch_axis, **kwargs)
    assert counted == expected // size
    return energy


BATCHES = [1, 2, "dynamic"]
EXPORTERS = [LEGACY, DYNAMO]


# ------------------------------------------------------------------------------------
# attention
# ------------------------------------------------------------------------------------
class Attention(nn.Module):
    """The issue's repro: nn.MultiheadAttention(64, 4) on 10 tokens (weights returned:
    the attention products go through bmm, which the counter sees)."""

    def __init__(self, batch_first):
        super().__init__()
        torch.manual_seed(0)
        self.attn = nn.MultiheadAttention(64, 4, batch_first=batch_first)

    def forward(self, x):
        return self.attn(x, x, x)[0]


@pytest.mark.parametrize("exporter", EXPORTERS)
@pytest.mark.parametrize("batch", BATCHES)
def test_multihead_attention_batch_first(exporter, batch):
    module = Attention(batch_first=True).eval()
    check(module, lambda b: (torch.randn(b, 10, 64),), exporter, batch)
    # the figure for 10 tokens: 3 projections and the output projection
    # (4 x 10 x 64 x 64) plus Q.K^T and the weighted sum of V (2 x 10 x 10 x 64)
    assert 4 * 10 * 64 * 64 + 2 * 10 * 10 * 64 == 176_640


@pytest.mark.parametrize("exporter", EXPORTERS)
@pytest.mark.parametrize("batch", [1, 2])
def test_multihead_attention_sequence_first(exporter, batch):
    """(tokens, batch, features) inputs: the batch axis is declared as axis 1."""
    module = Attention(batch_first=False).eval()
    check(module, lambda b: (torch.randn(10, b, 64),), exporter, batch, batch_axis=1)


def test_multihead_attention_sequence_first_dynamic():
    module = Attention(batch_first=False).eval()
    check(module, lambda b: (torch.randn(10, b, 64),), LEGACY, "dynamic", batch_axis=1)


class EncoderBlock(nn.Module):
    """A ViT-style model: patch embedding, class token, position embedding, one
    pre-norm encoder block (attention, GELU MLP), a head on the class token."""

    def __init__(self, dim=32, heads=4):
        super().__init__()
        torch.manual_seed(0)
        self.patch = nn.Conv2d(3, dim, 4, stride=4)
        self.cls = nn.Parameter(torch.randn(1, 1, dim))
        self.pos = nn.Parameter(torch.randn(1, 17, dim))
        self.ln1 = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.ln2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))
        self.head = nn.Linear(dim, 10)

    def forward(self, x):
        x = self.patch(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], dim=1) + self.pos
        h = self.ln1(x)
        x = x + self.attn(h, h, h)[0]
        x = x + self.mlp(self.ln2(x))
        return self.head(x[:, 0])


@pytest.mark.parametrize("exporter", EXPORTERS)
@pytest.mark.parametrize("batch", BATCHES)
def test_vit_encoder_block(exporter, batch):
    energy = check(EncoderBlock().eval(), lambda b: (torch.randn(b, 3, 16, 16),), exporter, batch)
    kinds = [layer.kind for layer in energy.layers]
    # layers in topological order: the input, the patch embedding first, the head last
    assert kinds[:2] == ["Input", "Conv"] and kinds[-1] in ("Gemm", "MatMul")
    assert "LayerNormalization" in kinds


# ------------------------------------------------------------------------------------
# ShuffleNet-style chunk: Shape -> Gather -> Div -> Mul -> Slice in the legacy export
# ------------------------------------------------------------------------------------
class ShuffleUnit(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.stem = nn.Conv2d(3, 16, 3, padding=1)
        self.branch = nn.Sequential(nn.Conv2d(8, 8, 1), nn.BatchNorm2d(8), nn.ReLU(),
                                    nn.Conv2d(8, 8, 3, padding=1, groups=8))
        self.out = nn.Conv2d(16, 8, 1)

    def forward(self, x):
        x = self.stem(x)
        a, b = x.chunk(2, dim=1)
        x = torch.cat([a, self.branch(b)], 1)
        n, c, h, w = x.shape
        x = x.view(n, 2, c // 2, h, w).transpose(1, 2).reshape(n, c, h, w)  # channel shuffle
        return self.out(x)


@pytest.mark.parametrize("exporter,batch", [(LEGACY, 1), (LEGACY, 2), (LEGACY, "dynamic"), (DYNAMO, 2)])
def test_shufflenet_chunk(exporter, batch):
    check(ShuffleUnit().eval(), lambda b: (torch.randn(b, 3, 8, 8),), exporter, batch)


# ------------------------------------------------------------------------------------
# recurrent layers
# ------------------------------------------------------------------------------------
class Recurrent(nn.Module):
    def __init__(self, kind, batch_first):
        super().__init__()
        torch.manual_seed(0)
        self.rnn = getattr(nn, kind)(8, 16, batch_first=batch_first, bidirectional=True)
        self.fc = nn.Linear(32, 4)

    def forward(self, x):
        return self.fc(self.rnn(x)[0])


def unrolled_lstm(module, x):
    """``module`` (batch-first, bidirectional LSTM + Linear) written out step by step
    with F.linear, so that the counter sees every product (nn.LSTM runs as one
    fused op it does not see)."""
    rnn, linear = module.rnn, nn.functional.linear
    outs = []
    for suffix, steps in (("", range(x.shape[1])), ("_reverse", reversed(range(x.shape[1])))):
        w_ih, w_hh = getattr(rnn, "weight_ih_l0" + suffix), getattr(rnn, "weight_hh_l0" + suffix)
        b_ih, b_hh = getattr(rnn, "bias_ih_l0" + suffix), getattr(rnn, "bias_hh_l0" + suffix)
        h = torch.zeros(x.shape[0], 16)
        c = torch.zeros(x.shape[0], 16)
        hs = {}
        for t in steps:
            i, f, g, o = (linear(x[:, t], w_ih, b_ih) + linear(h, w_hh, b_hh)).chunk(4, 1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(c)
            hs[t] = h
        outs.append(torch.stack([hs[t] for t in range(x.shape[1])], 1))
    return module.fc(torch.cat(outs, 2))


@pytest.mark.parametrize("batch", [1, 2, "dynamic"])
def test_lstm_batch_first(batch):
    module = Recurrent("LSTM", batch_first=True).eval()
    size = 2 if batch == "dynamic" else batch
    x = torch.randn(size, 5, 8)
    with torch.no_grad():  # the unrolled reference computes what nn.LSTM does
        np.testing.assert_allclose(unrolled_lstm(module, x).numpy(), module(x).numpy(), rtol=1e-4, atol=1e-5)
    expected = macs(lambda x: unrolled_lstm(module, x), (x,))
    model = export(module, (x,), LEGACY, dynamic_axes={0: 0} if batch == "dynamic" else None)
    assert [n.op_type for n in model.graph.node].count("LSTM") == 1
    counted, energy = connections(model)
    assert counted == expected // size
    lstm = next(layer for layer in energy.layers if layer.kind == "LSTM")
    # 5 positions x 2 directions x (3 sigmoid gates + 2 tanh) x 16 hidden units
    assert lstm.neurons == 5 * 2 * 5 * 16 and not lstm.spiking


@pytest.mark.parametrize("kind,exporter,batch,batch_first", [
    ("GRU", LEGACY, 2, False), ("GRU", LEGACY, "dynamic", False), ("GRU", DYNAMO, 2, False),
    ("RNN", LEGACY, 1, True), ("RNN", LEGACY, "dynamic", True),
])
def test_gru_and_rnn(kind, exporter, batch, batch_first):
    module = Recurrent(kind, batch_first=batch_first).eval()
    if batch_first:
        check(module, lambda b: (torch.randn(b, 5, 8),), exporter, batch)
    else:  # (sequence, batch, features)
        check(module, lambda b: (torch.randn(5, b, 8),), exporter, batch, batch_axis=1)


def test_recurrent_sequence_as_time_axis():
    """With the sequence axis declared as time, the counts are per timestep."""
    module = Recurrent("GRU", batch_first=True).eval()
    model = export(module, (torch.randn(2, 5, 8),), LEGACY)
    per_step, _ = connections(model, time_axis=1)
    whole, _ = connections(model)
    assert whole == 5 * per_step
    assert per_step == 2 * 3 * 16 * (8 + 16) + 32 * 4


# ------------------------------------------------------------------------------------
# pooling, normalizations, resampling, einsum: no synapses, no warnings
# ------------------------------------------------------------------------------------
class PoolsAndNorms(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.c1 = nn.Conv2d(3, 8, 3)
        self.bn = nn.BatchNorm2d(8)
        self.c2 = nn.Conv2d(8, 8, 3, padding=1)
        self.gn = nn.GroupNorm(2, 8)
        self.inorm = nn.InstanceNorm2d(8, affine=True)
        self.lrn = nn.LocalResponseNorm(3)
        self.lp = nn.LPPool2d(2, 2)
        self.up = nn.Upsample(scale_factor=2)
        self.ln = nn.LayerNorm(8)
        self.fc = nn.Linear(8, 5)

    def forward(self, x):
        x = nn.functional.max_pool2d(torch.relu(self.bn(self.c1(x))), 2)
        x = nn.functional.avg_pool2d(self.gn(self.c2(x)), 2)
        x = self.up(self.lp(self.lrn(self.inorm(x))))
        x = nn.functional.adaptive_avg_pool2d(x, 1).flatten(1)
        return self.fc(self.ln(torch.amax(x.view(x.shape[0], 8, 1), dim=2)))


@pytest.mark.parametrize("exporter,batch", [(LEGACY, 2), (LEGACY, "dynamic"), (DYNAMO, 1), (DYNAMO, "dynamic")])
def test_pooling_and_normalizations(exporter, batch):
    energy = check(PoolsAndNorms().eval(), lambda b: (torch.randn(b, 3, 18, 18),), exporter, batch)
    for layer in energy.layers:  # pooling and normalizations count no synapses and no neurons
        if layer.kind in ("MaxPool", "AveragePool", "LpPool", "LRN", "Resize", "GroupNormalization",
                          "InstanceNormalization", "LayerNormalization"):
            assert (layer.connections, layer.neurons) == (0, 0), layer


class Contraction(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.w = nn.Parameter(torch.randn(6, 5))

    def forward(self, x):
        return torch.einsum("bij,jk->bik", x, self.w)


@pytest.mark.parametrize("exporter", EXPORTERS)
def test_einsum(exporter):
    check(Contraction().eval(), lambda b: (torch.randn(b, 4, 6),), exporter, 2)


# ------------------------------------------------------------------------------------
# the summary of a real export: topological order, numbers never cut
# ------------------------------------------------------------------------------------
class Residual(nn.Module):
    """Two residual stages, exported by the legacy exporter (whose node order put
    later layers first before the layers were ordered topologically)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.stem = nn.Conv2d(3, 64, 3, padding=1)
        self.a = nn.Conv2d(64, 64, 3, padding=1)
        self.b = nn.Conv2d(64, 64, 3, padding=1)
        self.fc = nn.Linear(64, 10)

    def forward(self, x):
        x = torch.relu(self.stem(x))
        x = torch.relu(x + self.a(x))
        x = torch.relu(x + self.b(x))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


def test_summary_order_and_wide_numbers():
    module = Residual().eval()
    x = torch.randn(1, 3, 64, 64)
    model = export(module, (x,), LEGACY)
    counted, energy = connections(model)
    assert counted == macs(module, (x,))
    convs = [name for name in energy.layer_names if "Conv" in name or "Gemm" in name]
    assert convs == ["/stem/Conv", "/a/Conv", "/b/Conv", "/fc/Gemm"]
    big = energy.layer_stats["/a/Conv"]["connections"]
    assert big == 64 * 64 * 64 * 64 * 9 and len(str(big)) == 9
    devices = ["cpu", "gpu", "arm", "loihi", "spinnaker", "spinnaker2"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # no example data: spiking devices need none for this check
        columns = ["name", "output_shape", "params", "connections", "neurons"] + [f"energy {d}" for d in devices[:3]]
        text = energy.summary_string(columns=columns, line_length=98)
    tokens = text.replace("|", " ").split()
    assert str(big) in tokens or f"{big / 1e6:.4g}e6" in tokens
    assert not any(t != str(big) and str(big).startswith(t) and len(t) >= 4 for t in tokens)
