"""Spiking and filtering layers for Keras 3, following the KerasSpiking API.

Every layer here is a thin wrapper that builds a ``KerasSpikingCell`` and runs it
over the time axis with ``keras.layers.RNN``. The cells carry the arithmetic; it
is written to match the ``spikeonnx`` op contract step for step, so an exported
model reproduces the Keras outputs.

Shapes: ``B`` batch, ``T`` time, ``S`` the unit axes (any number, possibly more
than one, e.g. ``(H, W, C)``). Layer inputs are ``(B, T, *S)`` or, with
``time_major=True``, ``(T, B, *S)``.
"""

from __future__ import annotations

import inspect
import math
import numbers
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

import keras
import numpy as np
import tensorflow as tf

from . import config

__all__ = [
    "KerasSpikingCell",
    "KerasSpikingLayer",
    "SpikingActivationCell",
    "SpikingActivation",
    "LowpassCell",
    "Lowpass",
    "AlphaCell",
    "Alpha",
]

_PACKAGE = "keras_spiking"

# Lower bound applied to tau in the forward pass so that dt / tau stays finite.
_MIN_TAU = 1e-8

DtLike = Union[float, tf.Variable, "keras.Variable", None]


# --------------------------------------------------------------------------- helpers


def _is_variable(value: Any) -> bool:
    return isinstance(value, (tf.Variable, keras.Variable))


def _variable_value(var: Any) -> float:
    # .numpy() works for both tf.Variable and keras.Variable (eager)
    return float(np.asarray(var.numpy()))


def _resolve_dt(dt: DtLike, owner: str) -> Union[float, tf.Variable]:
    """Return a validated dt: the default if None, a positive float, or a variable.

    Variables are kept as the same object (not copied) so that later assignments,
    e.g. from ``DtScheduler``, are seen by every layer sharing them. Their value is
    not checked: like KerasSpiking, a variable may hold anything (e.g. 0 until a
    ``DtScheduler`` sets it at the first training batch).
    """
    if dt is None:
        return config.default.dt
    if _is_variable(dt):
        if tuple(dt.shape) != ():
            raise ValueError(f"{owner}: dt variable must be a scalar, got shape {dt.shape}")
        return dt
    if isinstance(dt, bool) or not isinstance(dt, (numbers.Real, np.floating)):
        raise TypeError(f"{owner}: dt must be a positive float or a tf.Variable, got {dt!r}")
    if not (float(dt) > 0 and math.isfinite(float(dt))):
        raise ValueError(f"{owner}: dt must be a finite number > 0, got {dt!r}")
    return float(dt)


def _dt_for_config(dt: Union[float, tf.Variable]) -> float:
    # a variable cannot go into a JSON config; its current value is what matters
    if _is_variable(dt):
        return _variable_value(dt)
    return float(dt)


def _to_size(size: Any, owner: str) -> Tuple[int, ...]:
    """Normalise ``size`` (int, sequence or TensorShape) to a tuple of ints."""
    if isinstance(size, tf.TensorShape):
        size = size.as_list()
    if isinstance(size, (numbers.Integral, np.integer)) and not isinstance(size, bool):
        size = (int(size),)
    try:
        dims = tuple(size)
    except TypeError:
        raise TypeError(f"{owner}: size must be an int or a tuple of ints, got {size!r}") from None
    out = []
    for d in dims:
        if d is None or isinstance(d, bool) or not isinstance(d, (numbers.Integral, np.integer)):
            raise ValueError(
                f"{owner}: every unit axis must have a known integer size, got size={dims}"
            )
        if int(d) <= 0:
            raise ValueError(f"{owner}: unit axes must be positive, got size={dims}")
        out.append(int(d))
    return tuple(out)


def _get_activation(activation: Any, owner: str) -> Callable:
    if activation is None:
        raise ValueError(f"{owner}: an activation (string or callable) is required")
    try:
        fn = keras.activations.get(activation)
    except (ValueError, TypeError) as err:
        raise ValueError(f"{owner}: unknown activation {activation!r} ({err})") from None
    if not callable(fn):
        raise ValueError(f"{owner}: activation {activation!r} is not callable")
    return fn


def _get_tau_initializer(tau_initializer: Any, owner: str) -> keras.initializers.Initializer:
    if isinstance(tau_initializer, (numbers.Real, np.floating)) and not isinstance(
        tau_initializer, bool
    ):
        if not float(tau_initializer) > 0:
            raise ValueError(f"{owner}: tau must be > 0, got {tau_initializer!r}")
        return keras.initializers.Constant(float(tau_initializer))
    if tau_initializer is None:
        raise ValueError(f"{owner}: tau_initializer is required (float or initializer)")
    try:
        return keras.initializers.get(tau_initializer)
    except (ValueError, TypeError) as err:
        raise ValueError(f"{owner}: cannot interpret tau_initializer {tau_initializer!r} ({err})") from None


def _get_initializer(init: Any, name: str, owner: str) -> keras.initializers.Initializer:
    if isinstance(init, (numbers.Real, np.floating)) and not isinstance(init, bool):
        return keras.initializers.Constant(float(init))
    try:
        return keras.initializers.get(init)
    except (ValueError, TypeError) as err:
        raise ValueError(f"{owner}: cannot interpret {name} {init!r} ({err})") from None


def _get_constraint(constraint: Any, name: str, owner: str) -> Optional[keras.constraints.Constraint]:
    try:
        return keras.constraints.get(constraint)
    except (ValueError, TypeError) as err:
        raise ValueError(f"{owner}: cannot interpret {name} {constraint!r} ({err})") from None


def _as_list(states: Any) -> List[Any]:
    if isinstance(states, (list, tuple)):
        return list(states)
    return [states]


def _reshape_to(x: tf.Tensor, inner: Tuple[int, ...]) -> Tuple[tf.Tensor, Callable]:
    """View ``x`` as ``(B, *inner)`` and return a function undoing the view.

    Cells accept per-step tensors either in their natural layout ``(B, *inner)`` or
    flattened to ``(B, prod(inner))`` (the only layout Keras' own RNN knows about);
    results are handed back in whichever layout came in.
    """
    if tuple(x.shape[1:]) == tuple(inner):
        return x, lambda y: y
    original = tf.shape(x)
    static = x.shape
    view = tf.reshape(x, tf.concat([original[:1], tf.constant(inner, tf.int32)], 0))

    def restore(y: tf.Tensor) -> tf.Tensor:
        y = tf.reshape(y, original)
        y.set_shape(static)
        return y

    return view, restore


def _batch_shape(batch_size: Any, inner: Tuple[int, ...], owner: str) -> Any:
    if batch_size is None:
        raise ValueError(f"{owner}.get_initial_state needs a batch_size")
    if isinstance(batch_size, (numbers.Integral, np.integer)):
        return [int(batch_size), *inner]
    # dynamic batch size (a scalar tensor) inside a traced function
    return tf.stack([tf.cast(batch_size, tf.int32), *[tf.constant(d, tf.int32) for d in inner]])


@tf.custom_gradient
def _straight_through(rates: tf.Tensor, spikes: tf.Tensor) -> tf.Tensor:
    """Forward ``spikes`` exactly, send the incoming gradient to ``rates``.

    ``rates + stop_gradient(spikes - rates)`` would be simpler but is not exact in
    float32; the custom gradient keeps the forward values bit-identical.
    """

    def grad(upstream: tf.Tensor) -> Tuple[tf.Tensor, tf.Tensor]:
        return upstream, tf.zeros_like(spikes)

    return tf.identity(spikes), grad


# ------------------------------------------------------------------------ base cell


@keras.saving.register_keras_serializable(package=_PACKAGE)
class KerasSpikingCell(keras.layers.Layer):
    """Base class of KerasSpiking RNN cells.

    A cell defines one timestep. Subclasses provide ``call_inference`` (the
    spiking/filtering behaviour) and ``call_training`` (used instead during
    training when ``always_use_inference`` is False).

    Parameters
    ----------
    size : int or tuple of int or tf.TensorShape
        Shape of one step of input/output, without batch and time axes.
    state_size : int or tuple of int or tf.TensorShape, optional
        Shape of the cell state without the batch axis; ``size`` if None.
    dt : float or tf.Variable, optional
        Length of one timestep in seconds. None uses ``keras_layers.default.dt``
        (read now, at construction). A variable is read on every call.
    always_use_inference : bool
        If True, ``call_inference`` is used during training as well.
    **kwargs
        Passed on to ``keras.layers.Layer``.

    Notes
    -----
    Keras' ``RNN`` only understands integer state sizes, so ``state_size`` and
    ``output_size`` hold the number of elements; the full shapes are in
    ``size`` and ``state_shape``. States produced by ``get_initial_state`` have the
    full shape ``(B, *state_shape)``.
    """

    def __init__(
        self,
        size: Any,
        state_size: Any = None,
        dt: DtLike = None,
        always_use_inference: bool = True,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        owner = type(self).__name__
        self.size = _to_size(size, owner)
        self.state_shape = self.size if state_size is None else _to_size(state_size, owner)
        self.dt = _resolve_dt(dt, owner)
        self.always_use_inference = bool(always_use_inference)
        # these two names are what keras.layers.RNN looks for
        self.output_size = int(np.prod(self.size))
        self.state_size = int(np.prod(self.state_shape))

    def _state_dtype(self, dtype: Any) -> tf.DType:
        # the dtype asked for, else the layer's compute dtype
        return tf.as_dtype(dtype or self.compute_dtype or "float32")

    def _dt_tensor(self, dtype: Any) -> tf.Tensor:
        # reading a variable here (not at construction) lets DtScheduler act
        return tf.cast(keras.ops.convert_to_tensor(self.dt), dtype)

    def call(self, inputs: Any, states: Any, training: Any = None) -> Tuple[Any, List[Any]]:
        """Run one timestep, choosing the training or the inference behaviour.

        ``call_training`` is used only if ``training`` is true and
        ``always_use_inference`` is False; otherwise ``call_inference``.
        """
        states = _as_list(states)
        if self.always_use_inference or training is None or training is False:
            return self.call_inference(inputs, states)
        if training is True:
            return self.call_training(inputs, states)
        # training given as a tensor: decide in the graph
        return tf.cond(
            tf.cast(training, tf.bool),
            lambda: self.call_training(inputs, states),
            lambda: self.call_inference(inputs, states),
        )

    def call_training(self, inputs: Any, states: List[Any]) -> Tuple[Any, List[Any]]:
        """Compute the output when training and ``always_use_inference=False``."""
        raise NotImplementedError("Subclass must implement `call_training`")

    def call_inference(self, inputs: Any, states: List[Any]) -> Tuple[Any, List[Any]]:
        """Compute the output at inference (or always, if ``always_use_inference``)."""
        raise NotImplementedError("Subclass must implement `call_inference`")

    def get_config(self) -> Dict[str, Any]:
        """Return the constructor arguments (for serialization)."""
        cfg = super().get_config()
        cfg.update(
            size=list(self.size),
            state_size=list(self.state_shape),
            dt=_dt_for_config(self.dt),
            always_use_inference=self.always_use_inference,
        )
        return cfg


# ----------------------------------------------------------------------- base layer


@keras.saving.register_keras_serializable(package=_PACKAGE)
class KerasSpikingLayer(keras.layers.Layer):
    """Base class of KerasSpiking layers: a cell run over time by ``keras.layers.RNN``.

    Parameters
    ----------
    dt : float or tf.Variable, optional
        Length of one timestep in seconds. None uses ``keras_layers.default.dt``
        (read at construction).
    return_sequences : bool
        Return the output of every timestep (default) or only of the last one.
    return_state : bool
        Also return the final state(s) after the output.
    stateful : bool
        If True, each call starts from the final state of the previous call
        (``reset_states()`` returns to the initial state). Needs a fixed batch size.
    unroll : bool
        Unroll the time loop instead of using a symbolic loop (short sequences
        only, needs a known number of timesteps).
    time_major : bool
        If True, inputs and sequence outputs are ``(T, B, *S)`` instead of
        ``(B, T, *S)``. States are always batch-first.
    **kwargs
        Passed on to ``keras.layers.Layer``.

    Notes
    -----
    Keras 3's ``RNN`` has no ``time_major`` option, so time-major data are
    transposed on the way in and out.
    """

    def __init__(
        self,
        dt: DtLike = None,
        return_sequences: bool = True,
        return_state: bool = False,
        stateful: bool = False,
        unroll: bool = False,
        time_major: bool = False,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self.dt = _resolve_dt(dt, type(self).__name__)
        self.return_sequences = bool(return_sequences)
        self.return_state = bool(return_state)
        self.stateful = bool(stateful)
        self.unroll = bool(unroll)
        self.time_major = bool(time_major)
        self.layer: Optional[keras.layers.RNN] = None

    @property
    def cell(self) -> Optional[KerasSpikingCell]:
        """The cell built by ``build`` (None before the layer is built)."""
        return None if self.layer is None else self.layer.cell

    # the cell class built by the default ``build_cell``; subclasses set it
    _cell_class: Optional[type] = None

    def _cell_params(self) -> Dict[str, Any]:
        """Cell constructor arguments other than ``size`` and ``dt``."""
        return {}

    def build_cell(self, input_shape: Tuple[Optional[int], ...]) -> KerasSpikingCell:
        """Create the cell for batch-major ``input_shape`` ``(B, T, *S)``.

        The default builds ``_cell_class`` with ``size=input_shape[2:]``, the
        layer's ``dt`` and ``_cell_params()``; subclasses set ``_cell_class`` or
        override this method.
        """
        if self._cell_class is None:
            raise NotImplementedError("Subclass must set `_cell_class` or implement `build_cell`")
        return self._cell_class(
            size=input_shape[2:],
            dt=self.dt,
            dtype=self.dtype_policy,
            name=f"{self.name}_cell",
            **self._cell_params(),
        )

    def _batch_major(self, shape: Tuple[Optional[int], ...]) -> Tuple[Optional[int], ...]:
        return (shape[1], shape[0], *shape[2:]) if self.time_major else shape

    def build(self, input_shape: Any) -> None:
        """Create the cell (its size is ``input_shape[2:]``) and the RNN around it.

        Notes
        -----
        Called automatically on the first call of the layer.
        """
        try:
            shape = tuple(None if d is None else int(d) for d in input_shape)
        except TypeError:
            raise ValueError(
                f"{type(self).__name__} expects a single input tensor, got input shape {input_shape!r}"
            ) from None
        if len(shape) < 3:
            axes = "(time, batch, units...)" if self.time_major else "(batch, time, units...)"
            raise ValueError(
                f"{type(self).__name__} needs inputs of rank >= 3 {axes}; "
                f"got shape {shape} (rank {len(shape)})"
            )
        if any(d is None for d in shape[2:]):
            raise ValueError(
                f"{type(self).__name__}: unit axes (after batch and time) must be known, "
                f"got input shape {shape}"
            )
        bm_shape = self._batch_major(shape)
        if self.stateful and bm_shape[0] is None:
            raise ValueError(
                f"{type(self).__name__}: stateful=True needs a fixed batch size, "
                f"got input shape {shape}"
            )
        cell = self.build_cell(bm_shape)
        # `trainable=False` given to this layer must reach the cell before it
        # creates its weights: Keras 3 freezes a layer's variables when they are
        # created (or when `trainable` is set later), and the cell is created here,
        # after this layer's constructor ran.
        cell.trainable = cell.trainable and self.trainable
        self.layer = keras.layers.RNN(
            cell,
            return_sequences=self.return_sequences,
            return_state=self.return_state,
            stateful=self.stateful,
            unroll=self.unroll,
            dtype=self.dtype_policy,
            trainable=self.trainable,
            name=f"{self.name}_rnn",
        )
        self.layer.build(bm_shape)
        super().build(input_shape)

    def call(
        self,
        inputs: Any,
        training: Any = None,
        initial_state: Any = None,
        constants: Any = None,
    ) -> Any:
        """Apply the layer to ``inputs``.

        Returns the output, or ``[output, *states]`` if ``return_state``.
        ``initial_state`` (a state tensor or list of them, batch-first, in the
        cell's state layout) overrides the cell's initial state.
        """
        if constants is not None:
            raise ValueError(f"{type(self).__name__} does not use `constants`")
        x = inputs
        rank = len(x.shape)
        if self.time_major:
            perm = [1, 0, *range(2, rank)]
            x = tf.transpose(x, perm)
        if initial_state is not None:
            initial_state = _as_list(initial_state)
        outputs = self.layer.call(x, initial_state=initial_state, training=training)
        if self.return_state:
            output, states = outputs[0], list(outputs[1:])
        else:
            output, states = outputs, []
        if self.time_major and self.return_sequences:
            output = tf.transpose(output, [1, 0, *range(2, rank)])
        if self.return_state:
            return [output, *states]
        return output

    def reset_states(self, states: Any = None) -> None:
        """Reset a stateful layer to its initial state (or to ``states``).

        Parameters
        ----------
        states : array or list of arrays, optional
            Values to load instead of ``cell.get_initial_state``.
        """
        if not self.stateful:
            raise ValueError(f"{type(self).__name__}.reset_states needs stateful=True")
        if self.layer is None or self.layer.states is None:
            raise ValueError(f"{type(self).__name__}.reset_states: layer is not built yet")
        variables = list(self.layer.states)
        if states is None:
            batch = int(variables[0].shape[0])
            states = self.cell.get_initial_state(batch_size=batch)
        states = _as_list(states)
        if len(states) != len(variables):
            raise ValueError(
                f"{type(self).__name__}.reset_states: expected {len(variables)} state "
                f"array(s), got {len(states)}"
            )
        for var, value in zip(variables, states, strict=True):
            value = keras.ops.convert_to_tensor(value, dtype=var.dtype)
            if tuple(value.shape[:1]) == tuple(var.shape[:1]) and np.prod(value.shape) == np.prod(var.shape):
                # the same elements in another layout, e.g. a KerasSpiking Alpha state
                # (B, 2, prod(S)) for a (B, 2, *S) variable
                value = keras.ops.reshape(value, var.shape)
            if tuple(value.shape) != tuple(var.shape):
                raise ValueError(
                    f"{type(self).__name__}.reset_states: state shape {tuple(value.shape)} "
                    f"does not match {tuple(var.shape)}"
                )
            var.assign(value)

    def reset_state(self, states: Any = None) -> None:
        """Alias of ``reset_states`` (Keras 3 spelling)."""
        self.reset_states(states)

    def get_config(self) -> Dict[str, Any]:
        """Return the constructor arguments (for serialization)."""
        cfg = super().get_config()
        cfg.update(
            dt=_dt_for_config(self.dt),
            return_sequences=self.return_sequences,
            return_state=self.return_state,
            stateful=self.stateful,
            unroll=self.unroll,
            time_major=self.time_major,
        )
        return cfg


# ------------------------------------------------------------ shared docstrings


def _shared_doc(**blocks: str) -> Callable[[type], type]:
    """Class decorator putting shared text into the class docstring.

    A docstring line holding only ``{name}`` is replaced by ``blocks[name]``,
    indented like that line. Cells and layers with the same parameters thus
    document them in full from one text.
    """

    def fill(cls: type) -> type:
        lines = []
        used = set()
        for line in (cls.__doc__ or "").splitlines():
            key = line.strip()
            if key.startswith("{") and key.endswith("}") and key[1:-1] in blocks:
                used.add(key[1:-1])
                indent = line[: len(line) - len(line.lstrip())]
                text = inspect.cleandoc(blocks[key[1:-1]])
                lines.extend(indent + part if part else part for part in text.splitlines())
            else:
                lines.append(line)
        unused = set(blocks) - used
        if unused:
            # a typo in a placeholder would silently drop documentation
            raise ValueError(f"{cls.__name__} docstring lacks placeholders {sorted(unused)}")
        cls.__doc__ = "\n".join(lines)
        return cls

    return fill


_FILTER_PARAMETERS = """
    tau_initializer : float or str or keras.initializers.Initializer
        Initial time constant in seconds (a float means a constant) or any Keras
        initializer for the ``tau`` weight: ``(1, *S)`` for Lowpass,
        ``(prod(S),)`` for Alpha (the shapes KerasSpiking uses).
    dt : float or tf.Variable, optional
        Timestep in seconds; None uses ``keras_layers.default.dt``.
    apply_during_training : bool
        If False the filter is the identity during training and its weights are
        frozen (not trainable).
    level_initializer : float or str or keras.initializers.Initializer
        Initializer of the ``initial_level`` weight (shaped like ``tau``): the
        level at which the filter starts, at rest.
    initial_level_constraint : str or keras.constraints.Constraint, optional
        Constraint on ``initial_level``.
    tau_constraint : str or keras.constraints.Constraint, optional
        Constraint on ``tau``; e.g. ``constraints.Mean()`` (mean along the last
        axis) shares one time constant between the units of a one-dimensional
        ``S``. Tau is clipped to >= 1e-8 in the forward pass anyway.
"""

_CELL_SIZE_PARAMETER = """
    size : int or tuple of int or tf.TensorShape
        Shape ``S`` of one step of input/output, without batch and time axes.
"""

_LAYER_PARAMETERS = """
    return_sequences, return_state, stateful, unroll, time_major
        See ``KerasSpikingLayer``.
    **kwargs
        Passed on to ``keras.layers.Layer``.
"""


# ------------------------------------------------------------- spiking activation


class _SpikingParams:
    """Parameters shared by ``SpikingActivationCell`` and ``SpikingActivation``.

    A mixin listed before the Keras base class, so that its ``get_config``
    extends the base's.
    """

    def _set_params(
        self, activation: Any, seed: Optional[int], spiking_aware_training: bool
    ) -> None:
        owner = type(self).__name__
        self.activation = _get_activation(activation, owner)
        if seed is not None and (
            isinstance(seed, bool) or not isinstance(seed, (numbers.Integral, np.integer))
        ):
            raise TypeError(f"{owner}: seed must be an int or None, got {seed!r}")
        self.seed = None if seed is None else int(seed)
        self.spiking_aware_training = bool(spiking_aware_training)

    def _cell_params(self) -> Dict[str, Any]:
        # the arguments as objects; the layer hands them on to its cell
        return dict(
            activation=self.activation,
            seed=self.seed,
            spiking_aware_training=self.spiking_aware_training,
        )

    def get_config(self) -> Dict[str, Any]:
        """Return the constructor arguments (for serialization)."""
        cfg = super().get_config()
        cfg.update(
            activation=keras.activations.serialize(self.activation),
            seed=self.seed,
            spiking_aware_training=self.spiking_aware_training,
        )
        return cfg


@keras.saving.register_keras_serializable(package=_PACKAGE)
class SpikingActivationCell(_SpikingParams, KerasSpikingCell):
    """RNN cell turning an activation function into a spiking one.

    Each unit integrates the output of the base activation (its firing rate in Hz)
    into a voltage; whenever the voltage passes an integer the unit emits that many
    spikes, each of height ``1/dt``. Per step, in float32::

        v = v + a(x) * dt;  n = floor(v);  v = v - n;  out = n / dt

    so the time integral of the output follows that of ``a(x)``. Negative rates give
    negative spikes.

    Parameters
    ----------
    size : int or tuple of int or tf.TensorShape
        Shape of one step of input/output, without batch and time axes.
    activation : str or callable
        The base activation function (anything ``keras.activations.get`` accepts).
    dt : float or tf.Variable, optional
        Timestep in seconds; None uses ``keras_layers.default.dt``.
    seed : int, optional
        Seed of the initial voltage. With a seed the initial voltage is
        ``tf.random.stateless_uniform((B, *size), seed=(seed, seed))``; without one
        it is drawn from an unseeded uniform [0, 1).
    spiking_aware_training : bool
        If True (default) training also uses spikes in the forward pass, with the
        gradient of the base activation in the backward pass. If False, training
        uses the plain base activation.
    **kwargs
        Passed on to ``keras.layers.Layer``.

    Notes
    -----
    To use the cell directly, wrap it: ``keras.layers.RNN(SpikingActivationCell(
    size=10, activation="relu"), return_sequences=True)``.
    """

    def __init__(
        self,
        size: Any,
        activation: Any,
        dt: DtLike = None,
        seed: Optional[int] = None,
        spiking_aware_training: bool = True,
        **kwargs: Any,
    ):
        kwargs.pop("always_use_inference", None)  # fixed by spiking_aware_training
        super().__init__(
            size=size,
            dt=dt,
            always_use_inference=spiking_aware_training,
            **kwargs,
        )
        self._set_params(activation, seed, spiking_aware_training)

    def get_initial_state(self, batch_size: Any = None, dtype: Any = None) -> List[tf.Tensor]:
        """Return the initial voltage ``[v]`` with ``v`` of shape ``(batch_size, *size)``.

        Uniform in [0, 1): ``tf.random.stateless_uniform(..., seed=(seed, seed))``
        when a seed was given, otherwise unseeded.
        """
        dtype = self._state_dtype(dtype)
        shape = _batch_shape(batch_size, self.size, type(self).__name__)
        if self.seed is None:
            voltage = tf.random.uniform(shape, dtype=dtype)
        else:
            voltage = tf.random.stateless_uniform(
                shape, seed=(self.seed, self.seed), dtype=dtype
            )
        return [voltage]

    def call_training(self, inputs: Any, states: List[Any]) -> Tuple[Any, List[Any]]:
        """Plain base activation; the voltage is left unchanged."""
        return self.activation(inputs), list(states)

    def call_inference(self, inputs: Any, states: List[Any]) -> Tuple[Any, List[Any]]:
        """Spiking output; the gradient is that of the base activation.

        Parameters
        ----------
        inputs : tf.Tensor
            Input to the activation, ``(B, *size)`` (or flattened).
        states : list of tf.Tensor
            ``[voltage]``.

        Returns
        -------
        spikes : tf.Tensor
            ``n / dt`` per element, ``n`` the number of spikes this step.
        states : list of tf.Tensor
            ``[new voltage]``.
        """
        x, restore_x = _reshape_to(inputs, self.size)
        voltage, restore_v = _reshape_to(states[0], self.size)
        rates = self.activation(x)
        dt = self._dt_tensor(rates.dtype)
        # the spike arithmetic carries no gradient; gradients reach the inputs
        # through `rates` by the straight-through op below
        held = tf.stop_gradient(rates)
        voltage = tf.stop_gradient(voltage) + held * dt
        n_spikes = tf.floor(voltage)
        voltage = voltage - n_spikes
        spikes = n_spikes / dt
        return restore_x(_straight_through(rates, spikes)), [restore_v(voltage)]


@keras.saving.register_keras_serializable(package=_PACKAGE)
class SpikingActivation(_SpikingParams, KerasSpikingLayer):
    """Layer turning an activation function into a spiking one, over time.

    A unit whose base activation outputs ``r`` emits on average ``r`` spikes per
    simulated second (``r * dt`` per step), each of height ``1/dt``, so the time
    average of the output approximates ``r``. Several spikes in one step give
    ``n/dt``; negative rates give negative spikes. The input needs a time axis;
    its length is the number of simulated steps and may differ between training
    and inference (e.g. train on one step with ``spiking_aware_training=False``).

    Parameters
    ----------
    activation : str or callable
        The base activation function.
    dt : float or tf.Variable, optional
        Timestep in seconds; None uses ``keras_layers.default.dt``.
    seed : int, optional
        Seed of the initial voltage (see ``SpikingActivationCell``).
    spiking_aware_training : bool
        If True (default) use spikes forward and the base activation's gradient
        backward during training; if False train with the base activation.
    return_sequences, return_state, stateful, unroll, time_major
        See ``KerasSpikingLayer``.
    **kwargs
        Passed on to ``keras.layers.Layer``.

    Notes
    -----
    Equivalent to ``keras.layers.RNN(SpikingActivationCell(...))`` with the RNN
    built for you (and support for any number of unit axes).
    """

    _cell_class = SpikingActivationCell

    def __init__(
        self,
        activation: Any,
        dt: DtLike = None,
        seed: Optional[int] = None,
        spiking_aware_training: bool = True,
        return_sequences: bool = True,
        return_state: bool = False,
        stateful: bool = False,
        unroll: bool = False,
        time_major: bool = False,
        **kwargs: Any,
    ):
        super().__init__(
            dt=dt, return_sequences=return_sequences, return_state=return_state,
            stateful=stateful, unroll=unroll, time_major=time_major, **kwargs,
        )
        self._set_params(activation, seed, spiking_aware_training)


# ------------------------------------------------------------------------ filters


class _FilterParams:
    """Parameters shared by the filter cells and layers (``tau``, ``initial_level``).

    A mixin listed before the Keras base class, so that its ``get_config``
    extends the base's.
    """

    def _set_params(
        self,
        tau_initializer: Any,
        apply_during_training: bool,
        level_initializer: Any,
        initial_level_constraint: Any,
        tau_constraint: Any,
    ) -> None:
        owner = type(self).__name__
        self.tau_initializer = _get_tau_initializer(tau_initializer, owner)
        self.apply_during_training = bool(apply_during_training)
        self.level_initializer = _get_initializer(level_initializer, "level_initializer", owner)
        self.initial_level_constraint = _get_constraint(
            initial_level_constraint, "initial_level_constraint", owner
        )
        self.tau_constraint = _get_constraint(tau_constraint, "tau_constraint", owner)

    def _cell_params(self) -> Dict[str, Any]:
        # the arguments as objects; the layer hands them on to its cell
        return dict(
            tau_initializer=self.tau_initializer,
            apply_during_training=self.apply_during_training,
            level_initializer=self.level_initializer,
            initial_level_constraint=self.initial_level_constraint,
            tau_constraint=self.tau_constraint,
        )

    def get_config(self) -> Dict[str, Any]:
        """Return the constructor arguments (for serialization)."""
        cfg = super().get_config()
        cfg.update(
            tau_initializer=keras.initializers.serialize(self.tau_initializer),
            apply_during_training=self.apply_during_training,
            level_initializer=keras.initializers.serialize(self.level_initializer),
            initial_level_constraint=keras.constraints.serialize(self.initial_level_constraint),
            tau_constraint=keras.constraints.serialize(self.tau_constraint),
        )
        return cfg


class _FilterCell(_FilterParams, KerasSpikingCell):
    """Everything of ``LowpassCell`` and ``AlphaCell`` but the discretisation.

    Holds the ``tau`` and ``initial_level`` weights, clips ``tau`` and switches to
    the identity in training when ``apply_during_training`` is False. Subclasses
    give the weight shape (``_weight_shape``), the state layout
    (``_state_shape``), the state at rest (``_rest_state``) and one step
    (``_step``).
    """

    def __init__(
        self,
        size: Any,
        tau_initializer: Any,
        dt: DtLike = None,
        apply_during_training: bool = True,
        level_initializer: Any = "zeros",
        initial_level_constraint: Any = None,
        tau_constraint: Any = None,
        **kwargs: Any,
    ):
        # both are in the config (from KerasSpikingCell) but follow from the others
        kwargs.pop("state_size", None)
        kwargs.pop("always_use_inference", None)
        size = _to_size(size, type(self).__name__)
        super().__init__(
            size=size,
            state_size=self._state_shape(size),
            dt=dt,
            always_use_inference=apply_during_training,
            **kwargs,
        )
        self._set_params(
            tau_initializer,
            apply_during_training,
            level_initializer,
            initial_level_constraint,
            tau_constraint,
        )

    def _weight_shape(self) -> Tuple[int, ...]:
        """Shape of the ``tau`` and ``initial_level`` weights."""
        raise NotImplementedError

    @staticmethod
    def _state_shape(size: Tuple[int, ...]) -> Tuple[int, ...]:
        """Shape of the state without the batch axis."""
        raise NotImplementedError

    @staticmethod
    def _rest_state(level: tf.Tensor) -> tf.Tensor:
        """State ``(B, *state_shape)`` of the filter at rest at ``level`` ``(B, *size)``."""
        raise NotImplementedError

    def _step(
        self, x: tf.Tensor, state: tf.Tensor, tau: tf.Tensor, a: tf.Tensor, r: tf.Tensor
    ) -> Tuple[tf.Tensor, tf.Tensor]:
        """One step from ``x`` ``(B, *size)`` and ``state``; returns ``(y, new_state)``.

        ``tau`` is clipped to >= 1e-8, ``r = dt / tau`` and ``a = exp(-r)``, all
        ``(1, *size)``.
        """
        raise NotImplementedError

    def build(self, input_shape: Any = None) -> None:
        """Create the ``initial_level`` and ``tau`` weights (see ``_weight_shape``)."""
        # frozen (not trainable) when the filter is skipped during training: the
        # weights would get no meaningful gradient there
        self.initial_level = self.add_weight(
            name="initial_level",
            shape=self._weight_shape(),
            initializer=self.level_initializer,
            trainable=self.apply_during_training,
            constraint=self.initial_level_constraint,
        )
        self.tau = self.add_weight(
            name="tau",
            shape=self._weight_shape(),
            initializer=self.tau_initializer,
            trainable=self.apply_during_training,
            constraint=self.tau_constraint,
        )
        super().build(input_shape)

    def _per_unit(self, weight: Any, dtype: tf.DType) -> tf.Tensor:
        """A ``tau`` or ``initial_level`` weight as ``(1, *size)`` in ``dtype``."""
        value = tf.cast(keras.ops.convert_to_tensor(weight), dtype)
        return tf.reshape(value, (1, *self.size))

    def get_initial_state(self, batch_size: Any = None, dtype: Any = None) -> List[tf.Tensor]:
        """Return ``[state]``, the filter at rest at ``initial_level``.

        ``state`` has shape ``(batch_size, *state_shape)``.
        """
        dtype = self._state_dtype(dtype)
        level = self._per_unit(self.initial_level, dtype)
        level = tf.broadcast_to(level, _batch_shape(batch_size, self.size, type(self).__name__))
        return [self._rest_state(level)]

    def call_training(self, inputs: Any, states: List[Any]) -> Tuple[Any, List[Any]]:
        """Identity: the filter is skipped in training, the state is kept."""
        return inputs, list(states)

    def call_inference(self, inputs: Any, states: List[Any]) -> Tuple[Any, List[Any]]:
        """One filter step; returns ``(y, [new_state])``."""
        x, restore_x = _reshape_to(inputs, self.size)
        state, restore_s = _reshape_to(states[0], self.state_shape)
        tau = tf.maximum(self._per_unit(self.tau, x.dtype), _MIN_TAU)
        r = self._dt_tensor(x.dtype) / tau
        y, new_state = self._step(x, state, tau, tf.exp(-r), r)
        return restore_x(y), [restore_s(new_state)]


@keras.saving.register_keras_serializable(package=_PACKAGE)
@_shared_doc(size=_CELL_SIZE_PARAMETER, filter=_FILTER_PARAMETERS)
class LowpassCell(_FilterCell):
    """RNN cell of a first-order lowpass filter.

    With ``a = exp(-dt / max(tau, 1e-8))`` each step computes
    ``y = (1 - a) * x + a * y_prev`` (exact zero-order-hold discretisation of
    ``tau y' = x - y``), starting from ``y_prev = initial_level``.

    Parameters
    ----------
    {size}
    {filter}
    **kwargs
        Passed on to ``keras.layers.Layer``.

    Notes
    -----
    The state is ``y_prev``, of shape ``(B, *size)``. The ``tau`` and
    ``initial_level`` weights have shape ``(1, *size)``, as in KerasSpiking.

    Use directly as ``keras.layers.RNN(LowpassCell(size=10, tau_initializer=0.01))``.
    """

    def _weight_shape(self) -> Tuple[int, ...]:
        return (1, *self.size)

    @staticmethod
    def _state_shape(size: Tuple[int, ...]) -> Tuple[int, ...]:
        return size

    @staticmethod
    def _rest_state(level: tf.Tensor) -> tf.Tensor:
        return level

    def _step(
        self, x: tf.Tensor, state: tf.Tensor, tau: tf.Tensor, a: tf.Tensor, r: tf.Tensor
    ) -> Tuple[tf.Tensor, tf.Tensor]:
        y = (1 - a) * x + a * state
        return y, y


@keras.saving.register_keras_serializable(package=_PACKAGE)
@_shared_doc(size=_CELL_SIZE_PARAMETER, filter=_FILTER_PARAMETERS)
class AlphaCell(_FilterCell):
    """RNN cell of an alpha filter (two identical lowpass stages in series).

    Impulse response ``(t / tau^2) exp(-t / tau)``, i.e. ``tau^2 y'' + 2 tau y' + y
    = u``. The state is ``(v, y)``, KerasSpiking's layout: ``v = dy/dt`` (per
    second) and the output ``y``.

    Each step goes through the equivalent cascade of two lowpass stages with
    outputs ``s1 = y + tau v`` and ``s2 = y``; with ``a = exp(-r)``,
    ``r = dt / max(tau, 1e-8)`` and input ``u`` held over the step, the exact
    zero-order-hold update is::

        s1 <- a s1 + (1 - a) u
        s2 <- r a s1_old + a s2 + (1 - a - r a) u
        y  =  s2,   v = (s1 - s2) / tau

    which is the same discretisation KerasSpiking applies to ``(v, y)`` (the
    float32 rounding differs slightly).

    Parameters
    ----------
    {size}
    {filter}
    **kwargs
        Passed on to ``keras.layers.Layer``.

    Notes
    -----
    State layout: one tensor ``(B, 2, *size)`` with ``[:, 0] = v`` and
    ``[:, 1] = y`` (for Keras' RNN, ``state_size`` is its element count
    ``2 * prod(size)``); a KerasSpiking-shaped ``(B, 2, prod(size))`` state is
    accepted as ``initial_state`` too. The initial state is ``(0,
    initial_level)``: the filter at rest at that level, as in KerasSpiking. In a
    user-built ``keras.layers.RNN`` with ``return_state=True``, Keras declares the
    symbolic state shape as ``(B, 2 * prod(size))`` while the tensor computed is
    ``(B, 2, *size)``; the ``Alpha`` layer reports the true shape.

    The ``tau`` and ``initial_level`` weights have shape ``(prod(size),)``, as in
    KerasSpiking, so weights of a KerasSpiking model load with ``set_weights``.

    The ``spikeonnx::Alpha`` op keeps the cascade state ``(s1, s2)``; the exporter
    converts between the two layouts where a Keras model passes states.

    Use directly as ``keras.layers.RNN(AlphaCell(size=10, tau_initializer=0.01))``.
    """

    def _weight_shape(self) -> Tuple[int, ...]:
        return (int(np.prod(self.size)),)

    @staticmethod
    def _state_shape(size: Tuple[int, ...]) -> Tuple[int, ...]:
        return (2, *size)

    @staticmethod
    def _rest_state(level: tf.Tensor) -> tf.Tensor:
        return tf.stack([tf.zeros_like(level), level], axis=1)

    def _step(
        self, x: tf.Tensor, state: tf.Tensor, tau: tf.Tensor, a: tf.Tensor, r: tf.Tensor
    ) -> Tuple[tf.Tensor, tf.Tensor]:
        v, y = state[:, 0], state[:, 1]
        # (v, y) -> cascade stages, one step of the cascade, and back
        s1, s2 = y + tau * v, y
        ra = r * a
        s1_new = a * s1 + (1 - a) * x
        s2_new = ra * s1 + a * s2 + (1 - a - ra) * x
        return s2_new, tf.stack([(s1_new - s2_new) / tau, s2_new], axis=1)


class _FilterLayer(_FilterParams, KerasSpikingLayer):
    """Constructor of ``Lowpass`` and ``Alpha``; the rest is in ``_FilterParams``."""

    def __init__(
        self,
        tau_initializer: Any,
        dt: DtLike = None,
        apply_during_training: bool = True,
        level_initializer: Any = "zeros",
        initial_level_constraint: Any = None,
        tau_constraint: Any = None,
        return_sequences: bool = True,
        return_state: bool = False,
        stateful: bool = False,
        unroll: bool = False,
        time_major: bool = False,
        **kwargs: Any,
    ):
        super().__init__(
            dt=dt, return_sequences=return_sequences, return_state=return_state,
            stateful=stateful, unroll=unroll, time_major=time_major, **kwargs,
        )
        self._set_params(
            tau_initializer,
            apply_during_training,
            level_initializer,
            initial_level_constraint,
            tau_constraint,
        )


@keras.saving.register_keras_serializable(package=_PACKAGE)
@_shared_doc(filter=_FILTER_PARAMETERS, layer=_LAYER_PARAMETERS)
class Lowpass(_FilterLayer):
    r"""Layer applying a first-order lowpass filter along time.

    Impulse response and transfer function:

    .. math::

       h(t) = (1 / \tau) \exp(-t / \tau), \qquad H(s) = \frac{1}{\tau s + 1}

    The time constants ``tau`` and the initial state ``initial_level`` (both of
    shape ``(1, *S)``) are trainable unless ``apply_during_training=False`` or
    ``trainable=False``.

    Parameters
    ----------
    {filter}
    {layer}

    Notes
    -----
    Equivalent to ``keras.layers.RNN(LowpassCell(...))`` with the RNN built for
    you. The state (``return_state=True``) has shape ``(B, *S)``.
    """

    _cell_class = LowpassCell


@keras.saving.register_keras_serializable(package=_PACKAGE)
@_shared_doc(filter=_FILTER_PARAMETERS, layer=_LAYER_PARAMETERS)
class Alpha(_FilterLayer):
    r"""Layer applying an alpha filter (second-order lowpass) along time.

    Impulse response and transfer function:

    .. math::

       h(t) = (t / \tau^2) \exp(-t / \tau), \qquad H(s) = \frac{1}{(\tau s + 1)^2}

    The time constants ``tau`` and the initial level ``initial_level`` (both of
    shape ``(prod(S),)``) are trainable unless ``apply_during_training=False`` or
    ``trainable=False``.

    Parameters
    ----------
    {filter}
    {layer}

    Notes
    -----
    Equivalent to ``keras.layers.RNN(AlphaCell(...))`` with the RNN built for
    you. The state (``return_state=True``) has shape ``(B, 2, *S)``: the output's
    time derivative ``v`` and the output ``y``, as in KerasSpiking; see
    ``AlphaCell``.
    """

    _cell_class = AlphaCell
