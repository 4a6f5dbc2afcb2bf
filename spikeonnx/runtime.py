"""onnxruntime sessions with the ``spikeonnx`` op library registered.

:class:`InferenceSession` is a thin, stricter wrapper of
:class:`onnxruntime.InferenceSession`: it registers our custom-op library, accepts a
path, bytes or :class:`onnx.ModelProto`, and checks the input feed (names, dtypes,
ranks, static dimensions) before onnxruntime sees it, so mistakes are reported with
the input's name and the expected and given values.

:class:`StreamingSession` runs a model exported with explicit state inputs and
outputs (``{layer}/state_in`` / ``{layer}/state_out``) one chunk of timesteps at a
time, carrying every state from call to call, so that a long sequence can be
processed piecewise with exactly the result of a single call.
"""

from __future__ import annotations

import json
import os
import threading
import weakref
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import onnx
import onnxruntime as ort

from .contract import (
    DOMAIN,
    KEY_INITIAL_STATE,
    KEY_STATE_IO,
    KEY_TIME_AXES,
    MAX_IR_VERSION,
    STATE_IN_SUFFIX,
    STATE_OUT_SUFFIX,
    MetadataError,
    ModelLike,
    initial_state,
    load_model,
    read_metadata,
)
from .events import event_inputs, event_nodes, fuse, synaptic_events
from .ops import library_path
from .reference import check_model_attributes

# MAX_IR_VERSION is re-exported from spikeonnx.contract (its one home).
__all__ = ["InferenceSession", "StreamingSession", "MAX_IR_VERSION", "max_threads", "check_threads"]

# onnxruntime type strings -> NumPy dtypes (the types our feeds can have).
_ORT_DTYPES = {
    "tensor(float)": np.dtype(np.float32),
    "tensor(double)": np.dtype(np.float64),
    "tensor(float16)": np.dtype(np.float16),
    "tensor(int8)": np.dtype(np.int8),
    "tensor(int16)": np.dtype(np.int16),
    "tensor(int32)": np.dtype(np.int32),
    "tensor(int64)": np.dtype(np.int64),
    "tensor(uint8)": np.dtype(np.uint8),
    "tensor(uint16)": np.dtype(np.uint16),
    "tensor(uint32)": np.dtype(np.uint32),
    "tensor(uint64)": np.dtype(np.uint64),
    "tensor(bool)": np.dtype(np.bool_),
}


def _element_dtype(type_string: str) -> Optional[np.dtype]:
    return _ORT_DTYPES.get(type_string)


def _describe_shape(shape: Sequence[Any]) -> str:
    return "(" + ", ".join("?" if d is None else str(d) for d in shape) + (",)" if len(shape) == 1 else ")")


def max_threads() -> int:
    """The largest thread count a session accepts: 4 x the number of CPUs.

    onnxruntime crashes or hangs creating tens of thousands of threads; more
    threads than a few per CPU only adds contention.
    """
    return 4 * (os.cpu_count() or 1)


def check_threads(value: Any, what: str = "thread count", *, allow_default: bool = True) -> int:
    """Return ``value`` if it is a valid thread count: 1 to :func:`max_threads`.

    Parameters
    ----------
    value : int
        The count.
    what : str
        How to name it in the error message.
    allow_default : bool
        Accept 0, onnxruntime's "choose for me".

    Raises
    ------
    ValueError
        If ``value`` is not an integer in range; the message states the range.
    """
    low = 0 if allow_default else 1
    bound = max_threads()
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not low <= value <= bound:
        default = " (0: onnxruntime's default)" if allow_default else ""
        raise ValueError(
            f"{what} must be an integer from {low} to {bound} (4 x the {os.cpu_count() or 1} CPUs){default}, "
            f"got {value!r}"
        )
    return int(value)


def _check_options_threads(options: ort.SessionOptions) -> None:
    if not isinstance(options, ort.SessionOptions):
        return  # onnxruntime names the type error
    check_threads(options.intra_op_num_threads, "sess_options.intra_op_num_threads")
    check_threads(options.inter_op_num_threads, "sess_options.inter_op_num_threads")


def _undeclared_shapes(model: onnx.ModelProto) -> set:
    """Names of graph inputs declared without a shape (any shape is allowed there)."""
    return {
        value.name
        for value in model.graph.input
        if value.type.HasField("tensor_type") and not value.type.tensor_type.HasField("shape")
    }


def _check_portable(model: onnx.ModelProto, source: str) -> None:
    """Without the library every ``spikeonnx`` op type needs its model-local function."""
    defined = {f.name for f in model.functions if f.domain == DOMAIN}
    missing = sorted({n.op_type for n in model.graph.node if n.domain == DOMAIN} - defined)
    if missing:
        raise ValueError(
            f"{source}: spikeonnx ops {', '.join(missing)} have no model-local function, so they run only "
            "with the op library; re-export with functions=True (spikeonnx export without --no-functions) "
            "or use library=True"
        )


class InferenceSession:
    """An :class:`onnxruntime.InferenceSession` that can run ``spikeonnx`` ops.

    Parameters
    ----------
    model : str, os.PathLike, bytes or onnx.ModelProto
        The model: a file path, its serialized bytes, or the proto (which is
        copied, not modified). An IR version above :data:`MAX_IR_VERSION` is
        lowered to it, because the supported onnxruntime rejects newer ones.
    sess_options : onnxruntime.SessionOptions, optional
        Session options; the op library is registered on them (once per
        options object). By default fresh options are created.
    providers : list, optional
        Execution providers; defaults to ``["CPUExecutionProvider"]``.
    library : bool
        Register the op library (the default). With ``False`` the session is stock
        onnxruntime: ``spikeonnx`` nodes run their model-local function bodies (see
        :mod:`spikeonnx.functions`), so every one of them needs one.
    **kwargs
        Passed on to :class:`onnxruntime.InferenceSession`.

    Attributes
    ----------
    session : onnxruntime.InferenceSession
        The underlying session.
    model : onnx.ModelProto
        The model as given (IR version lowered). With the op library, onnxruntime runs
        it with each event op followed by ``Relu`` fused into one node
        (:func:`spikeonnx.events.fuse_relu`), and each ``EventConv`` with the
        ``SpikingActivation`` it feeds (:func:`spikeonnx.events.fuse_spiking`), the same
        values.

    Raises
    ------
    FileNotFoundError
        If ``model`` is a path that does not exist, or the op library is missing.
    ValueError
        If ``model`` is not an ONNX model, a ``spikeonnx`` node has an unknown
        attribute or one of the wrong type, or a thread count of ``sess_options``
        is outside 0 (default) to :func:`max_threads`.

    Notes
    -----
    Thread safety: :meth:`run` may be called from several threads at once, as
    onnxruntime's ``run`` can (the session holds no state between calls).
    """

    def __init__(
        self,
        model: ModelLike,
        sess_options: Optional[ort.SessionOptions] = None,
        providers: Optional[Sequence[Any]] = None,
        *,
        library: bool = True,
        **kwargs: Any,
    ) -> None:
        self.model, self._source = load_model(model)
        if not library:
            _check_portable(self.model, self._source)
        # onnxruntime cannot tell our kernels about attributes they do not read (a
        # misspelt `time_mayor`); the schemas can.
        try:
            check_model_attributes(self.model)
        except ValueError as err:
            raise ValueError(f"{self._source}: {err}") from None
        if self.model.ir_version > MAX_IR_VERSION:
            self.model.ir_version = MAX_IR_VERSION
        options = sess_options if sess_options is not None else ort.SessionOptions()
        # How to build the second session run(count_events=True) needs (lazily).
        self._counting_args = (options, providers, library, kwargs)
        self._counting: Optional[Tuple[ort.InferenceSession, Dict[str, str]]] = None
        self._counting_lock = threading.Lock()
        if library:
            _register_library(options)
        # onnxruntime segfaults or hangs on absurd thread counts: check them first.
        _check_options_threads(options)
        # With the op library, event ops followed by Relu, and convolutions feeding a
        # SpikingActivation, run fused, the spikes between fused convolutions channels-last
        # (spikeonnx.events.fuse; execution only: a model without event ops is not copied
        # for it).
        runnable = fuse(self.model) if library and event_nodes(self.model) else self.model
        self.session = ort.InferenceSession(
            runnable.SerializeToString(),
            sess_options=options,
            providers=list(providers) if providers is not None else ["CPUExecutionProvider"],
            **kwargs,
        )
        self._inputs = {arg.name: arg for arg in self.session.get_inputs()}
        self._optional = {arg.name for arg in self.session.get_overridable_initializers()}
        self._outputs = [arg.name for arg in self.session.get_outputs()]
        self._any_shape = _undeclared_shapes(self.model)

    # -- onnxruntime API -----------------------------------------------------

    def get_inputs(self) -> List[Any]:
        """Graph inputs (``onnxruntime.NodeArg``: name, shape, type)."""
        return self.session.get_inputs()

    def get_outputs(self) -> List[Any]:
        """Graph outputs (``onnxruntime.NodeArg``: name, shape, type)."""
        return self.session.get_outputs()

    def get_modelmeta(self) -> Any:
        """Model metadata (``onnxruntime.ModelMetadata``), including ``custom_metadata_map``."""
        return self.session.get_modelmeta()

    def run(
        self,
        output_names: Optional[Sequence[str]],
        input_feed: Mapping[str, Any],
        run_options: Optional[ort.RunOptions] = None,
        *,
        count_events: bool = False,
    ) -> Any:
        """Run the model, after checking the feed.

        Parameters
        ----------
        output_names : list of str or None
            Outputs to compute; None for all, in graph order.
        input_feed : dict
            Graph input name -> array. Every value must already have the input's
            dtype (no silent casting), rank, and static dimensions.
        run_options : onnxruntime.RunOptions, optional
            Passed on to onnxruntime.
        count_events : bool
            Also count the synaptic events of every event-driven node fed by spikes
            (:func:`spikeonnx.events.event_inputs`; not those on the model's input):
            the nonzero inputs times the outputs each reaches, as its kernel processes them
            (:func:`spikeonnx.events.synaptic_events`). The first such call builds a
            second session that also returns the event nodes' inputs.

        Returns
        -------
        list of numpy.ndarray
            The requested outputs, in the order asked for; with ``count_events``, a
            tuple ``(outputs, events)`` with ``events`` a dict event-node name -> count
            (empty if the model has no event nodes).

        Raises
        ------
        ValueError
            On an unknown or missing input, a wrong dtype, rank or dimension (the
            message names the input and gives expected and given values), or an
            unknown output name.
        """
        feed = self._check_feed(input_feed)
        if output_names is not None:
            output_names = list(output_names)
            unknown = [name for name in output_names if name not in self._outputs]
            if unknown:
                raise ValueError(f"unknown output name(s) {unknown}; the model's outputs are {self._outputs}")
        if not count_events:
            return self.session.run(output_names, feed, run_options)

        session, inputs = self._counting_session()
        names = list(self._outputs if output_names is None else output_names)
        extra = [t for t in dict.fromkeys(inputs.values()) if t not in feed]
        results = session.run(names + extra, feed, run_options)
        values = {**dict(zip(extra, results[len(names):], strict=True)), **feed}
        events = {node: synaptic_events(self.model, node, values[t]) for node, t in inputs.items()}
        return results[: len(names)], events

    def _counting_session(self) -> Tuple[ort.InferenceSession, Dict[str, str]]:
        """The session of run(count_events=True): the model, with the event nodes' inputs as outputs."""
        with self._counting_lock:
            if self._counting is None:
                inputs = event_inputs(self.model)
                model = onnx.ModelProto()
                model.CopyFrom(self.model)
                graph_inputs = {i.name for i in model.graph.input}
                present = {o.name for o in model.graph.output}
                for name in dict.fromkeys(inputs.values()):
                    if name not in present and name not in graph_inputs:
                        model.graph.output.append(onnx.ValueInfoProto(name=name))
                options, providers, library, kwargs = self._counting_args
                session = InferenceSession(model, options, providers, library=library, **kwargs).session
                self._counting = (session, inputs)
            return self._counting

    # -- feed checks ---------------------------------------------------------

    def _check_feed(self, input_feed: Mapping[str, Any]) -> Dict[str, np.ndarray]:
        if not isinstance(input_feed, Mapping):
            raise ValueError(f"input_feed must be a dict of input name -> array, got {type(input_feed).__name__}")
        known = set(self._inputs) | self._optional
        unknown = [name for name in input_feed if name not in known]
        if unknown:
            raise ValueError(f"unknown input name(s) {unknown}; the model's inputs are {sorted(self._inputs)}")
        missing = [name for name in self._inputs if name not in input_feed]
        if missing:
            raise ValueError(f"missing input(s) {missing}; the model's inputs are {sorted(self._inputs)}")
        feed = {}
        for name, value in input_feed.items():
            if name in self._inputs:
                feed[name] = self._check_value(name, value)
            else:
                feed[name] = np.asarray(value)
        return feed

    def _check_value(self, name: str, value: Any) -> np.ndarray:
        arg = self._inputs[name]
        if not isinstance(value, np.ndarray):
            value = np.asarray(value)
        expected = _element_dtype(arg.type)
        if expected is not None and value.dtype != expected:
            raise ValueError(
                f"input {name!r}: expected dtype {expected} ({arg.type}), got {value.dtype} "
                f"(convert with .astype(np.{expected.name}))"
            )
        shape = arg.shape
        # an input declared without a shape takes any shape (onnxruntime reports it as ())
        if shape is not None and name not in self._any_shape:
            mismatch = value.ndim != len(shape) or any(
                isinstance(want, int) and want != got for want, got in zip(shape, value.shape, strict=True)
            )
            if mismatch:
                raise ValueError(
                    f"input {name!r}: expected shape {_describe_shape(shape)}, got {value.shape}"
                )
        return value

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._source}, inputs={list(self._inputs)}, outputs={self._outputs})"


# Session options the library was registered on; onnxruntime refuses to create a
# session when one options object registered the same library twice.
# Held weakly so that options objects can be garbage-collected.
_REGISTERED: "weakref.WeakSet[ort.SessionOptions]" = weakref.WeakSet()


def _register_library(options: ort.SessionOptions) -> None:
    if not isinstance(options, ort.SessionOptions):
        raise TypeError(f"sess_options must be onnxruntime.SessionOptions, got {type(options).__name__}")
    if options in _REGISTERED:
        return
    options.register_custom_ops_library(library_path())
    _REGISTERED.add(options)


# ---------------------------------------------------------------------------
# Streaming
# ---------------------------------------------------------------------------


def _read_metadata(model: onnx.ModelProto, where: str) -> Tuple[Any, Dict[str, Any]]:
    """Our metadata, validated by the contract, and the raw ``spikeonnx.initial_state`` entries.

    The initial-state entries are checked by :func:`spikeonnx.contract.initial_state`
    when a state is built from them, not here: a caller who passes every initial
    state to :meth:`StreamingSession.reset` can still stream a model whose entries
    are malformed.
    """
    rest = onnx.ModelProto()
    rest.metadata_props.extend(p for p in model.metadata_props if p.key != KEY_INITIAL_STATE)
    meta = read_metadata(rest, where)
    initial: Dict[str, Any] = {}
    for prop in model.metadata_props:
        if prop.key == KEY_INITIAL_STATE:
            try:
                initial = json.loads(prop.value)
            except (json.JSONDecodeError, RecursionError) as err:
                raise MetadataError(f"{where}: metadata {prop.key!r} is not valid JSON ({err})") from None
            if not isinstance(initial, dict):
                raise MetadataError(f"{where}: metadata {prop.key!r} must be a JSON object, got {prop.value[:80]!r}")
    return meta, initial


def _uses_time_major(model: onnx.ModelProto) -> bool:
    for node in model.graph.node:
        if node.domain == DOMAIN:
            for att in node.attribute:
                if att.name == "time_major" and att.i:
                    return True
    return False


class StreamingSession:
    """Run a model with ``*/state_in`` / ``*/state_out`` pairs chunk by chunk, carrying the state.

    Parameters
    ----------
    model : str, os.PathLike, bytes or onnx.ModelProto
        A model whose graph inputs include state inputs ``X/state_in`` with a
        matching output ``X/state_out`` (the exporter's convention; the metadata
        key ``spikeonnx.state_io`` may map them explicitly).
    sess_options, providers, **kwargs
        As for :class:`InferenceSession`.

    Notes
    -----
    Time axes come from the metadata key ``spikeonnx.time_axes`` (name -> axis or
    null); otherwise every data input and non-state output has its time axis at 1
    (at 0 if the model's spiking nodes are ``time_major``). The batch axis is the
    other of the first two axes unless ``spikeonnx.batch_axes`` says otherwise.
    States start as described by ``spikeonnx.initial_state`` (see
    ``docs/op-contract.md``), zeros for state inputs it does not mention, or as the
    caller passes to :meth:`reset`.

    Thread safety: the carried state makes a streaming session a sequence of
    calls, so each session holds a lock: :meth:`step`, :meth:`run_chunked` and
    :meth:`reset` called from several threads run one at a time, each seeing the
    state the previous call left (use one session per stream to run streams in
    parallel).

    Raises
    ------
    ValueError
        If the model has no state inputs, a state input has no state output, or
        a thread count is out of range (see :class:`InferenceSession`).
    """

    def __init__(
        self,
        model: ModelLike,
        sess_options: Optional[ort.SessionOptions] = None,
        providers: Optional[Sequence[Any]] = None,
        **kwargs: Any,
    ) -> None:
        # Re-entrant: run_chunked holds it across its steps.
        self._lock = threading.RLock()
        self.session = InferenceSession(model, sess_options=sess_options, providers=providers, **kwargs)
        meta, self._initial = _read_metadata(self.session.model, self.session._source)
        inputs = {arg.name: arg for arg in self.session.get_inputs()}
        outputs = [arg.name for arg in self.session.get_outputs()]

        state_io: Dict[str, str] = meta.state_io
        if not any(p.key == KEY_STATE_IO for p in self.session.model.metadata_props):
            state_io = {
                name: name[: -len(STATE_IN_SUFFIX)] + STATE_OUT_SUFFIX
                for name in inputs
                if name.endswith(STATE_IN_SUFFIX)
            }
        if not state_io:
            raise ValueError(
                f"{self.session._source} has no state inputs named '*{STATE_IN_SUFFIX}'; export it "
                "with state inputs/outputs to stream it"
            )
        for state_in, state_out in state_io.items():
            if state_in not in inputs:
                raise ValueError(f"state input {state_in!r} is not a graph input; inputs are {sorted(inputs)}")
            if state_out not in outputs:
                raise ValueError(
                    f"state input {state_in!r} has no matching graph output {state_out!r}; outputs are {outputs}"
                )
        #: state input name -> state output name
        self.state_io: Dict[str, str] = dict(state_io)
        self.input_names = [name for name in inputs if name not in state_io]
        state_outputs = set(state_io.values())
        self.output_names = [name for name in outputs if name not in state_outputs]

        default_axis = 0 if _uses_time_major(self.session.model) else 1
        time_axes = meta.time_axes
        batch_axes = meta.batch_axes
        self.time_axes: Dict[str, Optional[int]] = {}
        self.batch_axes: Dict[str, Optional[int]] = {}
        for name in [*self.input_names, *self.output_names]:
            axis = time_axes.get(name, default_axis)
            self.time_axes[name] = None if axis is None else int(axis)
            fallback = None if axis is None else 1 - int(axis) if int(axis) in (0, 1) else 0
            batch = batch_axes.get(name, fallback)
            self.batch_axes[name] = None if batch is None else int(batch)
        self._state_args = {name: inputs[name] for name in state_io}
        self.states: Optional[Dict[str, np.ndarray]] = None
        self._initial_overrides: Dict[str, np.ndarray] = {}

    # -- state handling ------------------------------------------------------

    def reset(self, batch_size: Optional[int] = None, states: Optional[Mapping[str, Any]] = None) -> None:
        """Forget the carried state and start over.

        Parameters
        ----------
        batch_size : int, optional
            Build the initial states for this batch size now. Without it they are
            built at the next :meth:`step` from the batch size of its inputs.
        states : dict, optional
            State input name -> initial value, replacing the model's default for
            those states (shape (B, *S), or (*S) to repeat over the batch). They
            stay the session's initial states until the next ``reset`` call, so
            ``run_chunked`` restarts from them too.

        Raises
        ------
        ValueError
            On an unknown state name, a state that is not numeric, or a bad batch size.
        """
        overrides = {}
        for name, value in (states or {}).items():
            if name not in self.state_io:
                raise ValueError(f"unknown state {name!r}; the model's states are {sorted(self.state_io)}")
            array = np.asarray(value)
            if array.dtype.kind not in "biuf":
                raise ValueError(
                    f"initial state {name!r}: dtype {array.dtype} is not numeric; the state input takes "
                    f"{self._state_args[name].type}"
                )
            overrides[name] = array
        if batch_size is not None and (
            isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1
        ):
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        with self._lock:
            self.states = None
            self._initial_overrides = overrides
            if batch_size is not None:
                self.states = self._initial_states(int(batch_size))

    def _state_shape(self, name: str, batch: int) -> Tuple[int, ...]:
        dims = self._state_args[name].shape
        if not dims:
            raise ValueError(f"state input {name!r} has no (batch, ...) shape in the model")
        rest = dims[1:]
        if not all(isinstance(d, int) for d in rest):
            raise ValueError(
                f"state input {name!r} has non-static unit dimensions {_describe_shape(dims)}; "
                "pass its initial value to reset(states=...)"
            )
        return (batch, *rest)

    def _state_dtype(self, name: str) -> np.dtype:
        dtype = _element_dtype(self._state_args[name].type)
        if dtype is None:
            raise ValueError(f"state input {name!r} has unsupported type {self._state_args[name].type}")
        return dtype

    def _initial_states(self, batch: int) -> Dict[str, np.ndarray]:
        states = {}
        for name in self.state_io:
            dtype = self._state_dtype(name)
            if name in self._initial_overrides:
                states[name] = self._override_state(name, batch, dtype)
                continue
            states[name] = self._default_state(name, batch, dtype)
        return states

    def _override_state(self, name: str, batch: int, dtype: np.dtype) -> np.ndarray:
        """The caller's initial value for state ``name``, broadcast over the batch."""
        value = self._initial_overrides[name]
        dims = self._state_args[name].shape or []
        if all(isinstance(d, int) for d in dims[1:]):
            shape = self._state_shape(name, batch)
        elif value.ndim == len(dims):  # given with its batch axis
            shape = (batch, *value.shape[1:])
        else:
            shape = (batch, *value.shape)
        try:
            return np.broadcast_to(value.astype(dtype), shape).copy()
        except ValueError:
            raise ValueError(f"initial state {name!r}: shape {value.shape} does not broadcast to {shape}") from None

    def _default_state(self, name: str, batch: int, dtype: np.dtype) -> np.ndarray:
        """State ``name`` as the model's ``spikeonnx.initial_state`` says (zeros if it says nothing)."""
        shape = self._state_shape(name, batch)
        spec = self._initial.get(name)
        return initial_state(spec, shape, dtype, name=name)

    # -- running -------------------------------------------------------------

    def _as_feed(self, inputs: Any) -> Dict[str, np.ndarray]:
        if isinstance(inputs, Mapping):
            feed = dict(inputs)
        else:
            if len(self.input_names) != 1:
                raise ValueError(
                    f"the model has {len(self.input_names)} data inputs {self.input_names}; pass a dict"
                )
            feed = {self.input_names[0]: inputs}
        unknown = [name for name in feed if name not in self.input_names]
        if unknown:
            raise ValueError(
                f"unknown input name(s) {unknown}; data inputs are {self.input_names} "
                f"(states are carried by the session, set them with reset(states=...))"
            )
        missing = [name for name in self.input_names if name not in feed]
        if missing:
            raise ValueError(f"missing input(s) {missing}; data inputs are {self.input_names}")
        return {name: np.asarray(value) for name, value in feed.items()}

    def _batch_size(self, feed: Mapping[str, np.ndarray]) -> int:
        sizes = {}
        for name, value in feed.items():
            axis = self.batch_axes.get(name)
            if axis is None:
                continue
            if value.ndim <= axis:
                raise ValueError(f"input {name!r}: shape {value.shape} has no batch axis {axis}")
            sizes[name] = value.shape[axis]
        if not sizes:
            raise ValueError("cannot tell the batch size from the inputs; call reset(batch_size=...)")
        if len(set(sizes.values())) > 1:
            raise ValueError(f"inputs disagree on the batch size: {sizes}")
        return next(iter(sizes.values()))

    def step(self, inputs: Any) -> Dict[str, np.ndarray]:
        """Run one chunk of timesteps and carry the states on.

        Parameters
        ----------
        inputs : dict or numpy.ndarray
            Data input name -> chunk, or a single array if the model has one data
            input. State inputs are supplied by the session.

        Returns
        -------
        dict
            Non-state output name -> value for this chunk.

        Raises
        ------
        ValueError
            On unknown/missing inputs, a batch size that differs from the carried
            states, or any feed error reported by :meth:`InferenceSession.run`.

        Notes
        -----
        A chunk of zero timesteps returns empty outputs (time axis of length 0)
        and leaves the states as they are, without running the model.
        """
        with self._lock:
            return self._step(inputs)

    def _step(self, inputs: Any) -> Dict[str, np.ndarray]:
        feed = self._as_feed(inputs)
        batch = self._batch_size(feed)
        for name, state in (self.states or {}).items():
            if state.shape[0] != batch:
                raise ValueError(
                    f"the inputs have batch size {batch} but state {name!r} has {state.shape[0]}; "
                    "call reset() to change the batch size"
                )
        if self._is_empty_chunk(feed):
            return self._empty_outputs(feed, batch)
        if self.states is None:
            self.states = self._initial_states(batch)
        feed.update(self.states)
        names = [*self.output_names, *(self.state_io[name] for name in self.states)]
        values = self.session.run(names, feed)
        results = dict(zip(names, values, strict=True))
        self.states = {name: results[self.state_io[name]] for name in self.states}
        return {name: results[name] for name in self.output_names}

    run = step

    def _is_empty_chunk(self, feed: Mapping[str, np.ndarray]) -> bool:
        """Whether some data input has a time axis of length 0."""
        for name, value in feed.items():
            axis = self.time_axes.get(name)
            if axis is not None and -value.ndim <= axis < value.ndim and value.shape[axis] == 0:
                return True
        return False

    def _empty_outputs(self, feed: Mapping[str, np.ndarray], batch: int) -> Dict[str, np.ndarray]:
        """The outputs of zero timesteps: every output empty along its time axis."""
        # The feed is still checked, so that a bad chunk fails whatever its length.
        self.session._check_feed({**feed, **self._placeholder_states(batch)})
        outputs = {arg.name: arg for arg in self.session.get_outputs()}
        result = {}
        for name in self.output_names:
            arg, time_axis = outputs[name], self.time_axes.get(name)
            if time_axis is None:
                raise ValueError(
                    f"output {name!r} has no time axis, so a chunk of zero timesteps has no value for it"
                )
            shape = []
            for axis, dim in enumerate(arg.shape or []):
                if axis == time_axis % len(arg.shape):
                    shape.append(0)
                elif axis == self.batch_axes.get(name):
                    shape.append(batch)
                elif isinstance(dim, int):
                    shape.append(dim)
                else:
                    raise ValueError(
                        f"output {name!r} has dimension {axis} of unknown size {dim!r}, so the empty result of "
                        "a chunk of zero timesteps cannot be shaped"
                    )
            dtype = _element_dtype(arg.type)
            if not shape or dtype is None:
                raise ValueError(f"output {name!r} ({arg.type}, shape {arg.shape}) cannot be returned empty")
            result[name] = np.zeros(shape, dtype)
        return result

    def _placeholder_states(self, batch: int) -> Dict[str, np.ndarray]:
        """The carried states, or (before the first step) zero-size stand-ins with their ranks."""
        if self.states is not None:
            return dict(self.states)
        stand_ins = {}
        for name, arg in self._state_args.items():
            dims = [batch] + [d if isinstance(d, int) else 1 for d in (arg.shape or [None])[1:]]
            stand_ins[name] = np.zeros(dims, _element_dtype(arg.type) or np.float32)
        return stand_ins

    def run_chunked(self, inputs: Any, chunk: int, reset: bool = True) -> Dict[str, np.ndarray]:
        """Feed a long input through the model ``chunk`` timesteps at a time.

        Parameters
        ----------
        inputs : dict or numpy.ndarray
            Whole sequences (data input name -> array, or a single array).
        chunk : int
            Timesteps per call (the last call may get fewer).
        reset : bool
            Start from the initial states (default) rather than from the states
            carried over from earlier calls.

        Returns
        -------
        dict
            Non-state output name -> outputs of all chunks concatenated along its
            time axis (outputs without a time axis: the value of the last chunk).

        Raises
        ------
        ValueError
            On a bad ``chunk``, inputs without a time axis, or inputs of different
            lengths.
        """
        if isinstance(chunk, bool) or not isinstance(chunk, (int, np.integer)) or chunk < 1:
            raise ValueError(f"chunk must be a positive integer, got {chunk!r}")
        with self._lock:
            return self._run_chunked(inputs, int(chunk), reset)

    def _run_chunked(self, inputs: Any, chunk: int, reset: bool) -> Dict[str, np.ndarray]:
        feed = self._as_feed(inputs)
        lengths = {}
        for name, value in feed.items():
            axis = self.time_axes.get(name)
            if axis is None:
                raise ValueError(f"input {name!r} has no time axis (metadata {KEY_TIME_AXES!r}); cannot split it")
            if value.ndim <= axis:
                raise ValueError(f"input {name!r}: shape {value.shape} has no time axis {axis}")
            lengths[name] = value.shape[axis]
        if len(set(lengths.values())) > 1:
            raise ValueError(f"inputs have different numbers of timesteps: {lengths}")
        steps = next(iter(lengths.values()))
        if reset:
            self.states = None  # rebuilt from the remembered initial states
        pieces: Dict[str, List[np.ndarray]] = {name: [] for name in self.output_names}
        for start in range(0, max(steps, 1), chunk):
            part = {
                name: np.take(value, np.arange(start, min(start + chunk, steps)), axis=self.time_axes[name])
                for name, value in feed.items()
            }
            for name, value in self._step(part).items():
                pieces[name].append(value)
        out = {}
        for name, values in pieces.items():
            axis = self.time_axes.get(name)
            out[name] = values[-1] if axis is None else np.concatenate(values, axis=axis)
        return out

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(inputs={self.input_names}, outputs={self.output_names}, "
            f"states={list(self.state_io)})"
        )
