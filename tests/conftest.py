"""Shared test helpers: the op-library marker, small ONNX model builders, registry restore.

- ``@pytest.mark.needs_ops`` skips a test when the compiled op library is not built,
  except in CI (``$CI`` set), where a missing library is an error.
- :func:`finish_model` and :func:`one_node_model` build models the way every test
  needs them (opset imports, an IR version onnxruntime accepts).
- The ``saved_registries`` fixture restores every extension registry after the test.

Test modules import the helpers with ``from tests.conftest import ...``: pytest's
``importlib`` import mode (``pyproject.toml``) names this module after its path from
the root directory, which the ``[tool.pytest.ini_options]`` table fixes.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from typing import Any, Iterable, Iterator, Mapping, Optional, Sequence

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from spikeonnx.contract import DOMAIN, MAX_IR_VERSION, OPSET_VERSION
from spikeonnx.registry import Registry

# -- the compiled op library ---------------------------------------------------------


def library_available() -> bool:
    """Whether the op library is built; in CI a missing library raises instead."""
    from spikeonnx.ops import library_path

    try:
        library_path()
    except FileNotFoundError:
        if os.environ.get("CI"):
            raise  # in CI the op library must have been built and installed
        return False
    return True


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "needs_ops: needs the compiled spikeonnx op library (skipped if not built)")
    config.addinivalue_line("markers", "lint: ruff check of the repository (tests/test_lint.py)")


def pytest_collection_modifyitems(config: pytest.Config, items: list) -> None:
    marked = [item for item in items if item.get_closest_marker("needs_ops") is not None]
    if marked and not library_available():
        skip = pytest.mark.skip(reason="spikeonnx op library not built (and CI unset)")
        for item in marked:
            item.add_marker(skip)


# -- ONNX model builders -------------------------------------------------------------

_ONNX_TYPE = {
    np.dtype(np.float32): TensorProto.FLOAT,
    np.dtype(np.float64): TensorProto.DOUBLE,
    np.dtype(np.int32): TensorProto.INT32,
}


def finish_model(
    graph: onnx.GraphProto,
    *,
    opset: int = 17,
    domains: Iterable[str] = (DOMAIN,),
    metadata: Optional[Mapping[str, Any]] = None,
    ir_version: int = MAX_IR_VERSION,
) -> onnx.ModelProto:
    """A model of ``graph`` importing the default domain at ``opset`` and ``domains`` at 1
    (``spikeonnx`` at its opset version), with ``metadata`` JSON-encoded into
    ``metadata_props``.

    The IR version defaults to the highest onnxruntime reads (onnx's ``make_model``
    writes a newer one).
    """
    imports = [helper.make_opsetid("", opset)]
    imports += [helper.make_opsetid(d, OPSET_VERSION if d == DOMAIN else 1) for d in domains]
    model = helper.make_model(graph, opset_imports=imports)
    model.ir_version = ir_version
    for key, value in (metadata or {}).items():
        model.metadata_props.add(key=key, value=json.dumps(value))
    return model


def one_node_model(
    op: str, inputs: Sequence[Optional[np.ndarray]], n_outputs: int = 1, *, name: str = "node0", **attrs: Any
) -> onnx.ModelProto:
    """A model of one ``spikeonnx`` node whose inputs are graph inputs ``in0, in1, ...``
    shaped and typed like ``inputs`` and whose outputs are ``out0, out1, ...``.

    ``None`` in ``inputs`` leaves that optional input out (empty name; trailing ones
    are dropped). The outputs carry the first input's element type, as the ops' type
    inference says, and no shape.
    """
    names = [f"in{i}" if value is not None else "" for i, value in enumerate(inputs)]
    while names and names[-1] == "":
        names.pop()
    graph_inputs = [
        helper.make_tensor_value_info(n, _ONNX_TYPE[value.dtype], list(value.shape))
        for n, value in zip(names, inputs)
        if n
    ]
    out_type = _ONNX_TYPE[inputs[0].dtype]
    outputs = [f"out{i}" for i in range(n_outputs)]
    node = helper.make_node(op, names, outputs, domain=DOMAIN, name=name, **attrs)
    graph = helper.make_graph(
        [node], "one_node", graph_inputs, [helper.make_tensor_value_info(o, out_type, None) for o in outputs]
    )
    return finish_model(graph)


# -- registries ----------------------------------------------------------------------


@pytest.fixture
def saved_registries() -> Iterator[None]:
    """Restore every extension registry (each :class:`spikeonnx.registry.Registry` held by
    an imported ``spikeonnx`` or ``keras_layers`` module or by a class of one, such as
    ``ModelEnergy.layer_stats_computers``) when the test ends."""
    registries = {}
    for module_name, module in list(sys.modules.items()):
        if module is None or not module_name.startswith(("spikeonnx", "keras_layers")):
            continue
        for value in list(vars(module).values()):
            candidates = vars(value).values() if isinstance(value, type) else (value,)
            for candidate in list(candidates):
                if isinstance(candidate, Registry):
                    registries[id(candidate)] = candidate
    with contextlib.ExitStack() as stack:
        for registry in registries.values():
            stack.enter_context(registry.saved())
        yield
